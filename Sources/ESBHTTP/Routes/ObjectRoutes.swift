import ESBCore
import Foundation
import Hummingbird
import NIOFoundationCompat

/// CRUD of one kind of configuration object under `/esb/api/<path>`:
/// list 200 with a bare array, create 201, PUT a partial update, DELETE 204, password change.
struct ObjectRoutes {
    let store: ObjectStore
    let kind: ObjectKind
    let path: String

    /// Each kind's path under `/esb/api`.
    static let paths: [(ObjectKind, String)] = [
        (ObjectKinds.basicAuth, "security/basic-auth"),
        (ObjectKinds.httpChannel, "channels/http"),
        (ObjectKinds.amqpDefinition, "definitions/amqp"),
        (ObjectKinds.amqpOutconn, "outgoing/amqp"),
        (ObjectKinds.amqpChannel, "channels/amqp"),
        (ObjectKinds.httpOutconn, "outgoing/http"),
    ]

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.get(RouterPath(path)) { _, _ in
            try JSON.response(try await store.list(kind))
        }
        api.post(RouterPath(path)) { request, _ in
            let fields = try await Self.body(request, kind: kind)
            return try JSON.response(try await store.create(kind, fields), status: .created)
        }
        api.get(RouterPath("\(path)/{name}")) { _, context in
            let name = try context.parameters.decoded("name")
            return try JSON.response(try await store.get(kind, name))
        }
        api.put(RouterPath("\(path)/{name}")) { request, context in
            let name = try context.parameters.decoded("name")
            let fields = try await Self.body(request, kind: kind)
            return try JSON.response(try await store.update(kind, name, fields))
        }
        api.delete(RouterPath("\(path)/{name}")) { _, context in
            let name = try context.parameters.decoded("name")
            try await store.delete(kind, name)
            return Response(status: .noContent)
        }
        if let secretField = kind.secretField {
            api.post(RouterPath("\(path)/{name}/\(secretField)")) { request, context in
                let name = try context.parameters.decoded("name")
                let fields = try await Self.body(request, kind: kind)
                guard let first = fields["\(secretField)1"]?.string, let second = fields["\(secretField)2"]?.string else {
                    throw APIError(.unprocessableContent, code: "invalid", "give \(secretField)1 and \(secretField)2", field: "\(secretField)1")
                }
                guard first == second else {
                    throw APIError(.unprocessableContent, code: "invalid", "\(secretField)1 and \(secretField)2 differ", field: "\(secretField)2")
                }
                guard !first.isEmpty else {
                    throw APIError(.unprocessableContent, code: "invalid", "the \(secretField) must not be empty", field: "\(secretField)1")
                }
                try await store.setSecret(kind, name, first)
                return Response(status: .noContent)
            }
        }
    }

    /// The request body as object fields; anything but a JSON object of scalars is 422 naming
    /// the byte offset (not JSON) or the field (a value of the wrong kind).
    static func body(_ request: Request, kind: ObjectKind) async throws -> ObjectFields {
        let data = Data(buffer: try await request.body.collect(upTo: 1 << 20))
        return try JSON.decodeBody(ObjectFields.self, from: data, what: kind.label,
                                   expected: "a JSON object of strings, integers, booleans or null")
    }
}
