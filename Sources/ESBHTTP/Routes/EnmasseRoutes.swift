import ESBCore
import ESBStore
import Foundation
import Hummingbird
import NIOFoundationCompat

/// enmasse through the API: `GET /esb/api/enmasse/export?format=yaml|json
/// [&include_secrets=true]` and `POST /esb/api/enmasse/import[?replace=true][&name=FILE]`.
struct EnmasseRoutes {
    let store: ObjectStore

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.get("enmasse/export") { request, _ in
            let query = request.uri.queryParameters
            let format = try Self.format(query["format"].map(String.init))
            let text = try await Self.export(store, format: format, includeSecrets: query["include_secrets"] == "true")
            var response = Response(status: .ok, headers: [.contentType: format.contentType + "; charset=utf-8"],
                                    body: .init(byteBuffer: ByteBuffer(string: text)))
            // An export may hold secrets: never cached, framed or sniffed.
            BrowserHeaders.protect(&response.headers)
            return response
        }
        api.post("enmasse/import") { request, _ in
            let query = request.uri.queryParameters
            let name = query["name"].map(String.init) ?? "enmasse file"
            let body = try await request.body.collect(upTo: 16 << 20)
            let outcome = try await Self.importFile(store, text: String(decoding: Data(buffer: body), as: UTF8.self),
                                                    name: name, replace: query["replace"] == "true")
            return try JSON.response(outcome)
        }
    }

    static func format(_ value: String?) throws -> EnmasseFile.Format {
        guard let value else { return .yaml }
        guard let format = EnmasseFile.Format(rawValue: value) else {
            throw APIError(.unprocessableContent, code: "invalid", "format must be yaml or json, not '\(value)'", field: "format")
        }
        return format
    }

    /// The export file of everything in the ODB.
    static func export(_ store: ObjectStore, format: EnmasseFile.Format, includeSecrets: Bool) async throws -> String {
        EnmasseFile.render(try await store.exportAll(includeSecrets: includeSecrets), format: format)
    }

    /// Imports a file, all or nothing; problems become one 422 listing each.
    static func importFile(_ store: ObjectStore, text: String, name: String, replace: Bool) async throws -> ObjectStore.ImportOutcome {
        do {
            let items = try EnmasseFile.parse(text, name: name, kinds: store.kindsInDependencyOrder)
            return try await store.importAll(items, replace: replace)
        } catch let error as ImportError {
            var apiError = APIError(.unprocessableContent, code: "invalid", error.description, field: error.problems.first?.field)
            apiError.problems = error.problems
            throw apiError
        }
    }
}
