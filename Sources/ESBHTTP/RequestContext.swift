import ESBCore
import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's core storage plus the TCP peer, which
/// the sign-in throttle counts by.
public struct ESBRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The TCP peer's address (a proxy's, when one is in front).
    public let peer: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress
    }

    /// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when the peer is
    /// one of `[main] trusted_proxies` (what the sign-in throttle counts by).
    func clientAddress(_ request: Request, trustedProxies: [String]) -> String {
        var peerAddress = peer?.ipAddress ?? "unknown"
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        if peerAddress.hasPrefix("::ffff:"), peerAddress.contains(".") { peerAddress.removeFirst("::ffff:".count) }
        guard !trustedProxies.isEmpty, trustedProxies.contains(peerAddress),
              let forwarded = request.headers[values: .init("X-Forwarded-For")!].last,
              let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty
        else { return peerAddress }
        return String(last.prefix(64))
    }
}

extension Parameters {
    /// A path parameter with its percent-encoding undone (Hummingbird hands segments over as
    /// sent), so that `/objects/def_sec/a%20b` names the object `a b`.
    /// - Throws: 400 when the parameter is missing or its encoding is broken.
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        guard let decoded = raw.removingPercentEncoding else {
            throw APIError(.badRequest, code: "bad_request", "path parameter '\(name)' is not valid percent-encoding")
        }
        return decoded
    }
}
