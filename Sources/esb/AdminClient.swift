import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// A small HTTP client for the admin API.
struct AdminClient {
    var baseURL: String
    var user: String
    var password: String
    /// A PEM file of trusted CAs for an HTTPS listener (`--cacert`); nil: the system's.
    var cacert: String?

    /// One client per trust setting for the life of the command. A refused connection fails
    /// at once instead of being retried until the deadline: an operator wants "cannot reach" now.
    private static let clients = Mutex<[String: HTTPClient]>([:])

    static func http(cacert: String?) throws -> HTTPClient {
        try clients.withLock { clients in
            if let known = clients[cacert ?? ""] { return known }
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.timeout.connect = .seconds(10)
            if let cacert {
                guard FileManager.default.isReadableFile(atPath: cacert) else { throw CLIError("--cacert: cannot read '\(cacert)'") }
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .file(cacert)
                configuration.tlsConfiguration = tls
            }
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[cacert ?? ""] = client
            return client
        }
    }

    struct Reply {
        var status: Int
        var body: Data
        var headers: [String: String]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func request(_ method: String, _ path: String, body: Data? = nil,
                 contentType: String = "application/json", authenticated: Bool = true) async throws -> Reply {
        let url = baseURL.trimmingSuffix("/") + path
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            request.headers.add(name: "Content-Type", value: contentType)
        }
        if authenticated {
            request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }
        do {
            let response = try await Self.http(cacert: cacert).execute(request, timeout: .seconds(300))
            let bytes = try await response.body.collect(upTo: 256 << 20)
            var headers: [String: String] = [:]
            for header in response.headers { headers[header.name.lowercased()] = header.value }
            return Reply(status: Int(response.status.code), body: Data(bytes.readableBytesView), headers: headers)
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("cannot reach \(url): \(error)")
        }
    }

    /// GETs a list endpoint and returns its JSON array of objects.
    func list(_ path: String) async throws -> [[String: Any]] {
        let reply = try expectSuccess(try await request("GET", path))
        guard let rows = (try? JSONSerialization.jsonObject(with: reply.body)) as? [[String: Any]] else {
            throw CLIError("\(path) did not answer a JSON array")
        }
        return rows
    }

    /// Sends a request and prints the JSON answer, pretty (nothing for an empty body).
    func show(_ method: String, _ path: String, body: Data? = nil) async throws {
        let reply = try expectSuccess(try await request(method, path, body: body))
        if reply.body.isEmpty { return }
        let object = try JSONSerialization.jsonObject(with: reply.body)
        let pretty = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: pretty, as: UTF8.self))
    }

    /// Fails with the server's own error message when the status is not 2xx.
    func expectSuccess(_ reply: Reply) throws -> Reply {
        guard (200..<300).contains(reply.status) else {
            if let object = try? JSONSerialization.jsonObject(with: reply.body) as? [String: Any],
               let error = object["error"] as? [String: Any], let message = error["message"] as? String {
                throw CLIError("HTTP \(reply.status) \(error["code"] ?? ""): \(message)")
            }
            throw CLIError("HTTP \(reply.status): \(reply.text.prefix(300))")
        }
        return reply
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
