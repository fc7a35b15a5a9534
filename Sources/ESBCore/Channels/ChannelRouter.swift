import Crypto
import ESBConfig
import ESBStore
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
        /// The security definition's credentials; nil for security `none`.
        public var security: Credentials?
        /// The channel's own `max_body_bytes`; nil: `[main] max_body_bytes`.
        public var maxBodyBytes: Int?
    }

    /// Basic-auth credentials as a channel checks them: both parts only as digests.
    public struct Credentials: Sendable {
        public var definition: String
        public var realm: String
        private var username: SecretDigest
        /// Nil when the definition has no password, is missing or inactive: nothing is accepted.
        private var password: SecretDigest?

        /// A definition that refuses every request (missing, inactive or without a password).
        static func refusing(_ definition: String) -> Credentials {
            Credentials(definition: definition, username: "", password: nil,
                        realm: ObjectValues(ObjectKinds.basicAuth, [:]).string("realm"), isActive: false)
        }

        init(definition: String, username: String, password: String?, realm: String, isActive: Bool) {
            self.definition = definition
            self.realm = realm
            self.username = SecretDigest(username)
            self.password = isActive ? password.map(SecretDigest.init) : nil
        }

        /// Compares in constant time; a definition without a password (or missing, or
        /// inactive) accepts nothing.
        public func accepts(username: String, password: String) -> Bool {
            let userMatches = self.username.matches(username)
            let passwordMatches = (self.password ?? Self.nothing).matches(password)
            return userMatches && passwordMatches && self.password != nil
        }

        /// Compared against when there is no password, so that the work done is the same.
        private static let nothing = SecretDigest("no password is set")
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
                let definition = ObjectValues(ObjectKinds.basicAuth, fields)
                credentials[definition.name] = Credentials(
                    definition: definition.name, username: definition.string("username"), password: secret,
                    realm: definition.string("realm"), isActive: definition.bool("is_active"))
            }
            let channels = try await store.list(ObjectKinds.httpChannel).compactMap { fields -> Channel? in
                let channel = ObjectValues(ObjectKinds.httpChannel, fields)
                guard channel.bool("is_active") else { return nil }
                let method = channel.string("method")
                let security = channel.string("security")
                return Channel(name: channel.name, path: ChannelPath(channel.string("url_path")),
                               method: method.isEmpty ? nil : method, service: channel.string("service"),
                               dataFormat: channel.string("data_format"),
                               // A definition that is gone refuses every request rather than none.
                               security: security == "none" ? nil : credentials[security] ?? .refusing(security),
                               maxBodyBytes: channel["max_body_bytes"].int)
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
