import ESBCore
import ESBHotDeploy
import ESBStore
import Foundation
import HTTPTypes

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
        var query: [String] = []
        var optionalQuery: [String] = []
        /// The body is text (YAML or JSON), not a JSON schema.
        var requestText = false
        /// Error statuses with the codes answering them, from ``ErrorStatuses``.
        var errors: [Int: [String]] = [:]
    }

    /// The CRUD operations of every kind of configuration object, and the AMQP test publish.
    static var objectOperations: [Operation] {
        ObjectRoutes.paths.flatMap { kind, path in
            objectOperations(path: "/esb/api/" + path, schema: schemaName(kind), tag: String(path.split(separator: "/")[0]),
                             hasSecret: kind.secretField != nil)
        } + objectOperations(path: "/esb/api/scheduler", schema: schemaName(ObjectKinds.scheduler), tag: "scheduler", hasSecret: false)
        + [
            Operation(method: "get", path: "/esb/api/scheduler/{name}/runs", summary: "A job's runs, newest first (the last 100)",
                      tag: "scheduler", responses: [200: nil, 401: "Error"], parameters: ["name"],
                      errors: ErrorStatuses.documented([.notFound])),
            Operation(method: "post", path: "/esb/api/scheduler/{name}/execute", summary: "Run a job now; 202 with the run's cid",
                      tag: "scheduler", responses: [202: nil, 401: "Error"], parameters: ["name"],
                      errors: ErrorStatuses.documented([.notFound, .inUse])),
            Operation(method: "post", path: "/esb/api/outgoing/amqp/{name}/publish", summary: "Test publish through an outgoing AMQP connection",
                      tag: "outgoing", requestSchema: "AMQPPublish",
                      responses: [200: "AMQPPublished", 401: "Error", 422: "Error"],
                      parameters: ["name"],
                      // A bad property is refused before the pool is asked: `invalid`.
                      errors: ErrorStatuses.documented(ErrorStatuses.publishCodes).merging([422: ["invalid"]]) { $1 + $0 }),
        ]
    }

    /// `def_amqp` → `DefAmqp`.
    static func schemaName(_ kind: ObjectKind) -> String {
        kind.name.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// The JSON schema of a kind, from its fields.
    static func schema(_ kind: ObjectKind) -> [String: Any] {
        var properties: [String: Any] = ["name": ["type": "string"]]
        var required = ["name"]
        for field in kind.fields {
            let type = switch field.type { case .string: "string"; case .int: "integer"; case .bool: "boolean" }
            var property: [String: Any] = ["type": field.defaultValue == .null ? [type, "null"] as Any : type as Any]
            if let allowed = field.allowed { property["enum"] = allowed }
            properties[field.name] = property
            if field.defaultValue == nil { required.append(field.name) }
        }
        if let secret = kind.secretField { properties[secret] = ["type": "string", "writeOnly": true] }
        return ["type": "object", "required": required, "properties": properties]
    }

    /// The CRUD operations of one kind of configuration object.
    static func objectOperations(path: String, schema: String, tag: String, hasSecret: Bool) -> [Operation] {
        var operations = [
            Operation(method: "get", path: path, summary: "List", tag: tag, responses: [200: nil, 401: "Error"]),
            Operation(method: "post", path: path, summary: "Create", tag: tag, requestSchema: schema,
                      responses: [201: schema, 401: "Error"], errors: ErrorStatuses.documented([.invalid, .duplicate])),
            Operation(method: "get", path: path + "/{name}", summary: "Read", tag: tag,
                      responses: [200: schema, 401: "Error"], parameters: ["name"], errors: ErrorStatuses.documented([.notFound])),
            Operation(method: "put", path: path + "/{name}", summary: "Partial update", tag: tag, requestSchema: schema,
                      responses: [200: schema, 401: "Error"], parameters: ["name"], errors: ErrorStatuses.documented([.invalid, .notFound])),
            Operation(method: "delete", path: path + "/{name}", summary: "Delete", tag: tag,
                      responses: [204: nil, 401: "Error"], parameters: ["name"], errors: ErrorStatuses.documented([.notFound, .inUse])),
        ]
        if hasSecret {
            operations.append(Operation(method: "post", path: path + "/{name}/password", summary: "Change the password", tag: tag,
                                        requestSchema: "PasswordChange", responses: [204: nil, 401: "Error"],
                                        parameters: ["name"], errors: ErrorStatuses.documented([.invalid, .notFound])))
        }
        return operations
    }

    var operations: [Operation]
    var schemas: [String: Any]

    /// Built on each request: the document is small and `[String: Any]` is not Sendable.
    static var adminAPI: OpenAPIDocument { OpenAPIDocument(
        operations: [
            Operation(method: "get", path: "/esb/ping", summary: "Liveness", tag: "system",
                      authenticated: false, responses: [200: "Ping"]),
            Operation(method: "get", path: "/esb/health", summary: "Readiness: ODB, kvdb, AMQP pools and channels",
                      tag: "system", authenticated: false, responses: [200: "Health", 503: "Health"]),
            Operation(method: "get", path: "/metrics", summary: "Prometheus metrics", tag: "system",
                      authenticated: false, responses: [200: nil]),
            Operation(method: "get", path: "/esb/api/services", summary: "Deployed services",
                      tag: "services", responses: [200: "ServiceList", 401: "Error"]),
            Operation(method: "get", path: "/esb/api/openapi.json", summary: "This document",
                      tag: "system", responses: [200: nil, 401: "Error"]),
            Operation(method: "get", path: "/esb/api/services/{name}", summary: "One deployed service", tag: "services",
                      responses: [200: "Service", 401: "Error", 404: "Error"], parameters: ["name"]),
            Operation(method: "post", path: "/esb/api/invoke/{service}", summary: "Invoke a service with the body as payload; the service's response as is, with X-ESB-CID",
                      tag: "services", responses: [200: nil, 401: "Error", 500: "Error"], parameters: ["service"],
                      errors: ErrorStatuses.documented(ErrorStatuses.invokeCodes)),
            Operation(method: "post", path: "/esb/api/deploy", summary: "Deploy a source body (query name=FILE.swift); waits for the result",
                      tag: "services", responses: [201: "Deployed", 401: "Error", 422: "Error"], query: ["name"]),
            Operation(method: "get", path: "/esb/api/deployments", summary: "Deployment units with status, hash, services, error",
                      tag: "services", responses: [200: "DeploymentList", 401: "Error"]),
            Operation(method: "get", path: "/esb/api/startup-services", summary: "Results of [startup_services] at the last start",
                      tag: "services", responses: [200: "StartupResults", 401: "Error"]),
            Operation(method: "get", path: "/esb/api/enmasse/export", summary: "Export every object as an enmasse file (query format=yaml|json, include_secrets=true)",
                      tag: "enmasse", responses: [200: nil, 401: "Error", 422: "Error"], optionalQuery: ["format", "include_secrets"]),
            Operation(method: "post", path: "/esb/api/enmasse/import", summary: "Import an enmasse file (YAML or JSON body), all or nothing (query replace=true, name=FILE)",
                      tag: "enmasse", responses: [200: "EnmasseImported", 401: "Error", 422: "Error"],
                      optionalQuery: ["replace", "name"], requestText: true),
            Operation(method: "get", path: "/esb/api/async/{cid}", summary: "An async invocation or invoke/retry: status, attempts, next run, last error",
                      tag: "services", responses: [200: "AsyncStatus", 401: "Error", 404: "Error"], parameters: ["cid"]),
            Operation(method: "get", path: "/esb/api/cluster", summary: "The servers of the cluster: address, version, start, last heartbeat, up or down",
                      tag: "cluster", responses: [200: "ClusterServers", 401: "Error", 503: "Error"]),
        ] + objectOperations,
        schemas: fixedSchemas.merging(objectSchemas) { $1 }
    ) }

    static var objectSchemas: [String: Any] {
        Dictionary(uniqueKeysWithValues: (ObjectRoutes.paths.map(\.0) + [ObjectKinds.scheduler]).map { (schemaName($0), schema($0)) })
    }

    static var fixedSchemas: [String: Any] { [
            "Ping": [
                "type": "object", "required": ["status", "server"],
                "properties": ["status": ["type": "string"], "server": ["type": "string"]],
            ],
            "Health": [
                "type": "object", "required": ["status", "server", "components"],
                "properties": [
                    "status": ["type": "string", "enum": names(HealthReport.Status.self)],
                    "server": ["type": "string"],
                    "components": ["type": "object", "additionalProperties": [
                        "type": "object",
                        "properties": [
                            "status": ["type": "string", "enum": names(HealthReport.Status.self)],
                            "detail": ["type": "string"],
                            "critical": ["type": "boolean"],
                            "engine": ["type": "string", "enum": ["sqlite", "postgresql"]],
                            "cluster": ["type": "object", "properties": [
                                "name": ["type": "string"], "up": ["type": "array", "items": ["type": "string"]],
                                "servers": ["type": "integer"],
                            ]],
                        ],
                    ]],
                ],
            ],
            "ServiceList": ["type": "array", "items": ["$ref": "#/components/schemas/Service"]],
            "Service": ["type": "object", "required": ["name", "unit", "kind"], "properties": [
                "name": ["type": "string"], "unit": ["type": "string"], "kind": ["type": "string", "enum": names(ServiceRoutes.ServiceInfo.Kind.self)],
            ]],
            "Deployed": ["type": "object", "properties": [
                "unit": ["type": "string"], "status": ["type": "string"], "services": ["type": "array", "items": ["type": "string"]],
                "cached": ["type": "boolean"],
            ]],
            "DeploymentList": ["type": "array", "items": ["type": "object", "properties": [
                "name": ["type": "string"], "kind": ["type": "string", "enum": names(UnitKind.self)],
                "status": ["type": "string", "enum": names(UnitStatus.self)],
                "hash": ["type": ["string", "null"]], "version": ["type": ["integer", "null"]],
                "services": ["type": "array", "items": ["type": "string"]], "error": ["type": ["string", "null"]],
                "imports": ["type": "array", "items": ["type": "string"]], "dependents": ["type": "array", "items": ["type": "string"]],
                "created_at": ["type": "string"], "updated_at": ["type": "string"],
                "servers": ["type": "array", "items": ["type": "object", "properties": [
                    "name": ["type": "string"], "status": ["type": "string", "enum": names(UnitStatus.self)],
                    "error": ["type": ["string", "null"]], "hash": ["type": ["string", "null"]],
                    "current": ["type": "boolean"],
                ]]],
            ]]],
            "ClusterServers": ["type": "array", "items": ["type": "object", "properties": [
                "name": ["type": "string"], "address": ["type": "string"], "version": ["type": "string"],
                "started_at": ["type": ["string", "null"]], "last_seen": ["type": ["string", "null"]],
                "status": ["type": "string", "enum": ["up", "down"]],
            ]]],
            "StartupResults": ["type": "array", "items": ["type": "object", "properties": [
                "service": ["type": "string"], "status": ["type": "string", "enum": names(StartupServices.Result.Status.self)],
                "duration_ms": ["type": ["integer", "null"]], "error": ["type": ["string", "null"]], "line": ["type": "integer"],
            ]]],
            "EnmasseImported": ["type": "object", "required": ["created", "updated", "warnings"], "properties": [
                "created": ["type": "array", "items": ["type": "string"]], "updated": ["type": "array", "items": ["type": "string"]],
                "warnings": ["type": "array", "items": ["type": "string"]],
            ]],
            "AsyncStatus": ["type": "object", "required": ["cid", "kind", "status", "target", "attempts", "repeats"], "properties": [
                "cid": ["type": "string"], "kind": ["type": "string", "enum": names(AsyncRecord.Kind.self)],
                "status": ["type": "string", "enum": names(AsyncRecord.Status.self)],
                "target": ["type": "string"], "source": ["type": ["string", "null"]], "orig_cid": ["type": ["string", "null"]],
                "attempts": ["type": "integer"], "repeats": ["type": "integer"],
                "next_run_at": ["type": ["string", "null"]], "last_error": ["type": ["string", "null"]],
                "errors": ["type": "array", "items": ["type": "string"]],
                "callback": ["type": ["string", "null"]], "callback_id": ["type": "string"],
                "callback_status": ["type": "string", "enum": names(AsyncRecord.CallbackStatus.self)],
                "callback_deliveries": ["type": "integer"], "callback_error": ["type": ["string", "null"]],
                "interruptions": ["type": "integer"], "created_at": ["type": "string"], "updated_at": ["type": "string"],
                "finished_at": ["type": ["string", "null"]],
            ]],
            "AMQPPublish": ["type": "object", "required": ["routing_key"], "properties": [
                "payload": [:], "exchange": ["type": "string"], "routing_key": ["type": "string"],
                "properties": ["type": "object"], "headers": ["type": "object"],
            ]],
            "AMQPPublished": ["type": "object", "required": ["cid", "status"], "properties": [
                "cid": ["type": "string"], "status": ["type": "string", "enum": names(AMQPRoutes.PublishResult.Status.self)],
            ]],
            "PasswordChange": ["type": "object", "required": ["password1", "password2"], "properties": [
                "password1": ["type": "string"], "password2": ["type": "string"],
            ]],
            "Error": [
                "type": "object", "required": ["error"],
                "properties": ["error": [
                    "type": "object", "required": ["code", "message"],
                    "properties": [
                        "code": ["type": "string"], "message": ["type": "string"],
                        "field": ["type": ["string", "null"]], "cid": ["type": "string"],
                        "problems": ["type": "array", "items": ["type": "object", "properties": [
                            "location": ["type": "string"], "object": ["type": ["string", "null"]],
                            "field": ["type": ["string", "null"]], "message": ["type": "string"],
                        ]]],
                    ],
                ]],
            ],
        ]
    }

    /// An enum's values, as the JSON shows them.
    static func names<Value: CaseIterable & RawRepresentable<String>>(_ type: Value.Type) -> [String] {
        type.allCases.map(\.rawValue)
    }

    /// The document as JSON bytes.
    var json: Data {
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            var responses: [String: Any] = [:]
            // Answers any route may give: 429 after too many failed sign-ins, 403 for a
            // cross-site state change, 413 for a body over the limit.
            var statuses = operation.responses
            if operation.authenticated { statuses[429] = "Error" }
            if operation.path.hasPrefix("/esb/api/"), ["post", "put", "patch", "delete"].contains(operation.method) {
                statuses[403] = "Error"
                statuses[413] = "Error"
            }
            for status in operation.errors.keys { statuses[status] = "Error" }
            for (status, schema) in statuses {
                let codes = operation.errors[status] ?? []
                let description = codes.isEmpty
                    ? HTTPStatusText.text(status) : "\(HTTPResponse.Status(code: status).reasonPhrase): \(codes.joined(separator: ", "))"
                var response: [String: Any] = ["description": description]
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
            let parameters = operation.parameters.map { name -> [String: Any] in
                ["name": name, "in": "path", "required": true, "schema": ["type": "string"]]
            } + operation.query.map { name -> [String: Any] in
                ["name": name, "in": "query", "required": true, "schema": ["type": "string"]]
            } + operation.optionalQuery.map { name -> [String: Any] in
                ["name": name, "in": "query", "required": false, "schema": ["type": "string"]]
            }
            if !parameters.isEmpty { entry["parameters"] = parameters }
            if operation.requestText {
                entry["requestBody"] = ["required": true, "content": ["application/yaml": ["schema": ["type": "string"]],
                                                                      "application/json": ["schema": ["type": "object"]]]]
            }
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
        case 403: "Cross-site request refused (forbidden.cross_site)"
        case 413: "Body larger than the path takes"
        case 429: "Too many failed sign-ins from this address (auth.throttled, Retry-After)"
        case 404: "Not found"
        case 422: "Invalid"
        case 503: "ODB unusable"
        default: "HTTP \(status)"
        }
    }
}
