import Crypto
import Foundation
import Logging
import Synchronization

/// The active HTTP channels, rebuilt whenever a channel or basic-auth definition changes.
/// Requests read an immutable snapshot: one lock to fetch it, no I/O.
public final class ChannelRouter: Sendable {
    /// A channel ready to serve.
    public struct Channel: Sendable {
        public var name: String
        public var path: ChannelPath
        /// Upper-case method, or nil for any.
        public var method: String?
        public var service: String
        public var dataFormat: String
        public var security: Credentials?
    }

    /// Basic-auth credentials as a channel checks them: the password only as a digest.
    public struct Credentials: Sendable {
        public var definition: String
        public var username: String
        public var passwordDigest: [UInt8]
        public var realm: String
        public var isActive: Bool

        public func accepts(username: String, password: String) -> Bool {
            let digest = Array(SHA256.hash(data: Data(password.utf8)))
            var difference: UInt8 = username == self.username ? 0 : 1
            for (a, b) in zip(digest, passwordDigest) { difference |= a ^ b }
            return difference == 0 && isActive
        }
    }

    /// What a request path resolves to.
    public enum Resolution: Sendable {
        case matched(Channel, parameters: [String: String])
        /// The path matches channels, but none for this method.
        case methodNotAllowed(allowed: [String])
        case none
    }

    private let snapshot = Mutex<[Channel]>([])
    private let store: ObjectStore
    private let logger: Logger

    public init(store: ObjectStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Loads the channels now and again after every change to channels or security definitions.
    public func start() async {
        await reload()
        store.observe([ObjectKinds.httpChannel, ObjectKinds.basicAuth]) { [weak self] in await self?.reload() }
    }

    /// Rebuilds the snapshot from the ODB.
    public func reload() async {
        do {
            var credentials: [String: Credentials] = [:]
            for (fields, secret) in try await store.listWithSecrets(ObjectKinds.basicAuth) {
                let name = fields["name"]?.string ?? ""
                credentials[name] = Credentials(
                    definition: name, username: fields["username"]?.string ?? "",
                    // No password set yet: a digest nothing hashes to, so every attempt fails.
                    passwordDigest: secret.map { Array(SHA256.hash(data: Data($0.utf8))) } ?? [],
                    realm: fields["realm"]?.string ?? "SwiftESB", isActive: fields["is_active"]?.bool ?? true)
            }
            let channels = try await store.list(ObjectKinds.httpChannel).compactMap { fields -> Channel? in
                guard fields["is_active"]?.bool ?? true else { return nil }
                let method = fields["method"]?.string ?? ""
                let security = fields["security"]?.string ?? "none"
                return Channel(name: fields["name"]?.string ?? "", path: ChannelPath(fields["url_path"]?.string ?? "/"),
                               method: method.isEmpty ? nil : method, service: fields["service"]?.string ?? "",
                               dataFormat: fields["data_format"]?.string ?? "json",
                               security: security == "none" ? nil : credentials[security])
            }
            // More literal segments first; the sort is stable, so ties keep name order.
            let ordered = channels.enumerated().sorted {
                ($0.element.path.specificity, -$0.offset) > ($1.element.path.specificity, -$1.offset)
            }.map(\.element)
            snapshot.withLock { $0 = ordered }
            logger.info("HTTP channels loaded", metadata: ["esb.channels": "\(ordered.count)"])
        } catch {
            logger.error("cannot load HTTP channels; keeping the previous set", metadata: ["esb.error": "\(error)"])
        }
    }

    /// Finds the channel for a request.
    public func resolve(method: String, path: Substring) -> Resolution {
        let channels = snapshot.withLock { $0 }
        guard !channels.isEmpty else { return .none }
        var allowed: [String] = []
        for channel in channels {
            guard let parameters = channel.path.match(path) else { continue }
            if channel.method == nil || channel.method == method { return .matched(channel, parameters: parameters) }
            allowed.append(channel.method!)
        }
        return allowed.isEmpty ? .none : .methodNotAllowed(allowed: allowed)
    }
}
