import ESBService
import Foundation

/// One `outconn_plain_http` as the server uses it, with its basic-auth credentials resolved.
struct HTTPOutconnSettings: Sendable, Equatable {
    var name: String
    /// `scheme://host[:port]`, no trailing slash.
    var address: String
    /// May hold `{param}` segments.
    var urlPath: String
    var method: String
    var dataFormat: String
    var timeout: Duration
    var poolSize: Int
    var isActive: Bool
    /// `follow_redirects`, default false: a redirect could carry the request, and its
    /// credentials, to another host.
    var followRedirects: Bool
    var credentials: Credentials?
    /// The security definition named but inactive or without a password: calls fail, naming it.
    var securityProblem: String?

    struct Credentials: Sendable, Equatable {
        var username: String
        var password: String
    }

    init(outconn fields: ObjectFields, definitions: [String: (fields: ObjectFields, secret: String?)]) {
        let outconn = ObjectValues(ObjectKinds.httpOutconn, fields)
        name = outconn.name
        var address = outconn.string("address")
        while address.hasSuffix("/") { address.removeLast() }
        self.address = address
        urlPath = outconn.string("url_path")
        method = outconn.string("method")
        dataFormat = outconn.string("data_format")
        timeout = .milliseconds(outconn.int("timeout_ms"))
        poolSize = outconn.int("pool_size")
        isActive = outconn.bool("is_active")
        followRedirects = outconn.bool("follow_redirects")
        let security = outconn.string("security")
        if security != "none" {
            if let definition = definitions[security].map({ (ObjectValues(ObjectKinds.basicAuth, $0.fields), $0.secret) }),
               definition.0.bool("is_active"), let password = definition.1 {
                credentials = Credentials(username: definition.0.string("username"), password: password)
            } else {
                securityProblem = "its security definition '\(security)' is inactive, missing or has no password"
            }
        }
    }

    /// Settings that need a new connection pool when they change.
    var poolKey: String { "\(address)|\(poolSize)|\(timeout)|\(followRedirects)" }

    /// Whether the address carries `user:password@`, which new and edited outconns refuse.
    var addressHasCredentials: Bool {
        guard let url = URL(string: address) else { return false }
        return url.user != nil || url.password != nil
    }

    /// The content type a body of this format is sent with.
    var contentType: String {
        switch dataFormat {
        case "xml": "application/xml; charset=utf-8"
        case "text": "text/plain; charset=utf-8"
        default: "application/json"
        }
    }

    /// The full URL: `{param}` segments filled (percent-encoded) and the query appended in key order.
    /// - Throws: ``ServiceError`` `http.invalid_request` naming a missing path parameter.
    func url(pathParameters: [String: String], query: [String: String]) throws -> String {
        var segmentAllowed = CharacterSet.urlPathAllowed
        segmentAllowed.remove(charactersIn: "/?#")
        var path = ""
        var rest = Substring(urlPath)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            path += rest[..<open]
            let parameter = String(rest[rest.index(after: open)..<close])
            guard let value = pathParameters[parameter] else {
                throw ServiceError(.httpInvalidRequest, "outgoing HTTP connection '\(name)': path parameter '\(parameter)' of \(urlPath) is missing")
            }
            path += value.addingPercentEncoding(withAllowedCharacters: segmentAllowed) ?? value
            rest = rest[rest.index(after: close)...]
        }
        path += rest
        guard !query.isEmpty else { return address + path }
        var queryAllowed = CharacterSet.urlQueryAllowed
        queryAllowed.remove(charactersIn: "&=+;")
        let pairs = query.sorted { $0.key < $1.key }.map { key, value in
            (key.addingPercentEncoding(withAllowedCharacters: queryAllowed) ?? key) + "="
                + (value.addingPercentEncoding(withAllowedCharacters: queryAllowed) ?? value)
        }
        return address + path + "?" + pairs.joined(separator: "&")
    }
}
