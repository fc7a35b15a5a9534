import HTTPTypes
import Hummingbird

/// Refuses state-changing requests a browser sends on another site's behalf: POST, PUT,
/// PATCH or DELETE whose `Origin` host:port differs from the request's `Host`, or whose
/// `Sec-Fetch-Site` is `cross-site` or `same-site`, get 403 `forbidden.cross_site` before the
/// body is read. `esb` and curl send neither header.
struct CrossSiteMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Whether the listener speaks HTTPS (the default port of a `Host` without one).
    let secure: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        switch request.method {
        case .post, .put, .patch, .delete:
            if let reason = Self.crossSiteReason(request, secure: secure) {
                throw APIError(.forbidden, code: "forbidden.cross_site", "cross-site request refused: \(reason)")
            }
        default: break
        }
        return try await next(request, context)
    }

    static func crossSiteReason(_ request: Request, secure: Bool) -> String? {
        if let site = request.headers[.secFetchSite]?.lowercased(), site == "cross-site" || site == "same-site" {
            return "Sec-Fetch-Site is \(site)"
        }
        guard let origin = request.headers[.origin] else { return nil }
        // HTTP/1's Host header is the request's authority in swift-http-types.
        let host = request.head.authority ?? ""
        guard let origin = Self.hostAndPort(origin: origin), let target = Self.hostAndPort(host: host, secure: secure),
              origin == target else {
            return "its Origin does not match the Host it was sent to"
        }
        return nil
    }

    /// `host:port` of an Origin (`scheme://host[:port]`), lower-cased, with the scheme's default port.
    static func hostAndPort(origin: String) -> String? {
        guard let schemeEnd = origin.range(of: "://") else { return nil }
        let scheme = origin[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        return hostAndPort(host: String(origin[schemeEnd.upperBound...]), secure: scheme == "https")
    }

    /// `host:port` of a Host header value, lower-cased, with the default port when it has none.
    static func hostAndPort(host: String, secure: Bool) -> String? {
        let text = host.lowercased()
        guard !text.isEmpty, !text.contains("/"), !text.contains("@") else { return nil }
        let hasPort: Bool
        if text.hasPrefix("[") {
            hasPort = text.range(of: "]:") != nil
        } else {
            hasPort = text.contains(":")
        }
        return hasPort ? text : "\(text):\(secure ? 443 : 80)"
    }
}
