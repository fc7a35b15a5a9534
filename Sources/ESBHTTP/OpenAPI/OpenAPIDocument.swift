import Foundation

/// The OpenAPI 3 description of the HTTP interface, served at `/esb/api/openapi.json`.
/// Each feature adds its operations to ``operations``; schemas live in ``schemas``.
struct OpenAPIDocument {
    struct Operation {
        var method: String
        var path: String
        var summary: String
        var tag: String
        var authenticated = true
        var requestSchema: String?
        /// Status code to response schema name (or nil for no body).
        var responses: [Int: String?]
        var parameters: [String] = []
    }

    var operations: [Operation]
    var schemas: [String: Any]

    /// Built on each request: the document is small and `[String: Any]` is not Sendable.
    static var adminAPI: OpenAPIDocument { OpenAPIDocument(
        operations: [
            Operation(method: "get", path: "/esb/ping", summary: "Liveness", tag: "system",
                      authenticated: false, responses: [200: "Ping"]),
            Operation(method: "get", path: "/esb/health", summary: "Readiness: ODB, kvdb, AMQP pools",
                      tag: "system", authenticated: false, responses: [200: "Health", 503: "Health"]),
            Operation(method: "get", path: "/metrics", summary: "Prometheus metrics", tag: "system",
                      authenticated: false, responses: [200: nil]),
            Operation(method: "get", path: "/esb/api/services", summary: "Deployed services",
                      tag: "services", responses: [200: "ServiceList", 401: "Error"]),
            Operation(method: "get", path: "/esb/api/openapi.json", summary: "This document",
                      tag: "system", responses: [200: nil, 401: "Error"]),
        ],
        schemas: [
            "Ping": [
                "type": "object", "required": ["status", "server"],
                "properties": ["status": ["type": "string"], "server": ["type": "string"]],
            ],
            "Health": [
                "type": "object", "required": ["status", "server", "components"],
                "properties": [
                    "status": ["type": "string", "enum": ["ok", "degraded"]],
                    "server": ["type": "string"],
                    "components": ["type": "object", "additionalProperties": [
                        "type": "object",
                        "properties": [
                            "status": ["type": "string", "enum": ["ok", "degraded"]],
                            "detail": ["type": "string"],
                            "critical": ["type": "boolean"],
                        ],
                    ]],
                ],
            ],
            "ServiceList": ["type": "array", "items": ["type": "object"]],
            "Error": [
                "type": "object", "required": ["error"],
                "properties": ["error": [
                    "type": "object", "required": ["code", "message"],
                    "properties": [
                        "code": ["type": "string"], "message": ["type": "string"],
                        "field": ["type": ["string", "null"]],
                    ],
                ]],
            ],
        ]
    ) }

    /// The document as JSON bytes.
    var json: Data {
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            var responses: [String: Any] = [:]
            for (status, schema) in operation.responses {
                var response: [String: Any] = ["description": HTTPStatusText.text(status)]
                if let schema {
                    response["content"] = ["application/json": ["schema": ["$ref": "#/components/schemas/\(schema)"]]]
                }
                responses[String(status)] = response
            }
            var entry: [String: Any] = [
                "summary": operation.summary, "tags": [operation.tag], "responses": responses,
                "operationId": operation.method + operation.path.replacingOccurrences(of: "/", with: "_"),
            ]
            entry["security"] = operation.authenticated ? [["basicAuth": [String]()]] : [[String: [String]]]()
            if let request = operation.requestSchema {
                entry["requestBody"] = ["required": true, "content": ["application/json": ["schema": ["$ref": "#/components/schemas/\(request)"]]]]
            }
            paths[operation.path, default: [:]][operation.method] = entry
        }
        let document: [String: Any] = [
            "openapi": "3.1.0",
            "info": ["title": "SwiftESB admin API", "version": "1.0.0"],
            "paths": paths,
            "components": [
                "schemas": schemas,
                "securitySchemes": ["basicAuth": ["type": "http", "scheme": "basic"]],
            ],
        ]
        return (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    }
}

enum HTTPStatusText {
    static func text(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 204: "No content"
        case 401: "Credentials missing or wrong"
        case 404: "Not found"
        case 409: "Duplicate or in use"
        case 422: "Invalid"
        case 503: "ODB unusable"
        default: "HTTP \(status)"
        }
    }
}
