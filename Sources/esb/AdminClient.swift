import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small HTTP client for the admin API.
struct AdminClient {
    var baseURL: String
    var user: String
    var password: String

    struct Reply {
        var status: Int
        var body: Data
        var headers: [String: String]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func request(_ method: String, _ path: String, body: Data? = nil,
                 contentType: String = "application/json", authenticated: Bool = true) async throws -> Reply {
        guard let url = URL(string: baseURL.trimmingSuffix("/") + path) else {
            throw CLIError("invalid server URL '\(baseURL)'")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 300
        if body != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if authenticated {
            let token = Data("\(user):\(password)".utf8).base64EncodedString()
            request.setValue("Basic \(token)", forHTTPHeaderField: "Authorization")
        }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw CLIError("cannot reach \(url.absoluteString): \(error.localizedDescription)")
        }
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http?.allHeaderFields ?? [:] {
            headers["\(key)".lowercased()] = "\(value)"
        }
        return Reply(status: http?.statusCode ?? 0, body: data, headers: headers)
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
