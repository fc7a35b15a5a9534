import ESBConfig
import ESBRedis
import ESBService
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Redis for services (`[kvdb]`): a pooled client, rebuilt when SIGHUP changes the section,
/// errors as the SDK names them, a health component and metrics.
/// `esbd` starts and serves without Redis: calls fail with `kvdb.unavailable` until it answers.
///
/// A service of the server's group: the pool is closed when the group stops it, after
/// everything that calls it.
public final class KVDBService: ServiceLifecycle.Service, Sendable {
    private let client = Mutex<RedisClient?>(nil)
    private let logger: Logger
    private let commandCount = Counter(label: "esb_kvdb_commands_total")
    private let errors = Counter(label: "esb_kvdb_errors_total")
    private let duration = Timer(label: "esb_kvdb_duration_seconds", preferredDisplayUnit: .seconds)

    /// Commands that need one connection across calls, which a pool cannot give.
    static let unsupported: Set<String> = [
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "AUTH", "HELLO", "RESET", "QUIT", "MONITOR",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
    ]

    public init(config: ServerConfig.KVDB?, logger: Logger) {
        self.logger = logger
        apply(config)
    }

    public func run() async throws {
        try? await gracefulShutdown()
        shutdown()
    }

    /// Uses a new `[kvdb]` section; an unchanged one keeps the pool.
    public func apply(_ config: ServerConfig.KVDB?) {
        let wanted = config.map(Self.configuration)
        let (retired, changed) = client.withLock { client -> (RedisClient?, Bool) in
            guard client?.configuration != wanted else { return (nil, false) }
            let old = client
            client = wanted.map(RedisClient.init)
            return (old, true)
        }
        retired?.shutdown()
        if changed, let wanted {
            logger.info("kvdb pool ready", metadata: ["kvdb.address": "\(wanted.address)", "kvdb.pool_size": "\(wanted.poolSize)"])
        }
    }

    static func configuration(_ config: ServerConfig.KVDB) -> RedisConfiguration {
        var configuration = RedisConfiguration()
        configuration.host = config.host
        configuration.port = config.port
        configuration.unixSocketPath = config.unixSocketPath
        configuration.password = config.password?.value
        configuration.database = config.db
        configuration.timeoutMilliseconds = config.timeoutMilliseconds
        configuration.poolSize = config.poolSize
        return configuration
    }

    /// Runs commands in one round trip (on the calling service thread when a connection is idle).
    /// - Throws: ``ServiceError`` `kvdb.unavailable`, `kvdb.timeout`, `kvdb.reply_error`, `kvdb.unsupported_command`.
    public nonisolated(nonsending) func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        let client = try ready(commands)
        let replies: RedisReplies<RedisValue> = try await measured(count: commands.count) {
            try await client.pipeline(commands, as: RedisValue.self)
        }
        if let (index, text) = replies.firstError {
            errors.increment()
            throw ServiceError(.kvdbReplyError, "kvdb \(commands[index][0].uppercased()): \(text)")
        }
        return replies.values
    }

    /// Runs one command.
    /// - Throws: as ``pipeline(_:)``.
    public nonisolated(nonsending) func execute(_ command: [String]) async throws -> RedisValue {
        let client = try ready(CollectionOfOne(command))
        do {
            return try await measured(count: 1) { try await client.execute(command, as: RedisValue.self) }
        } catch let error as RedisError where error.code == .reply {
            throw ServiceError(.kvdbReplyError, "kvdb \(command[0].uppercased()): \(error.message)")
        }
    }

    /// The client, once the commands are known to be ones a pool can run.
    private func ready(_ commands: some Collection<[String]>) throws -> RedisClient {
        for command in commands {
            guard let name = command.first?.uppercased(), !name.isEmpty else {
                throw ServiceError(.kvdbUnsupportedCommand, "kvdb: an empty command")
            }
            if Self.unsupported.contains(name) {
                throw ServiceError(.kvdbUnsupportedCommand, "kvdb: \(name) needs one connection across calls, which the pool cannot give")
            }
        }
        guard let client = client.withLock({ $0 }) else {
            throw ServiceError(.kvdbUnavailable, "kvdb is not configured: server.conf has no [kvdb] section")
        }
        return client
    }

    /// Runs a call with its metrics; a failure to reach Redis becomes `kvdb.unavailable` or
    /// `kvdb.timeout` (an error reply stays a ``RedisError`` for the caller to name).
    private nonisolated(nonsending) func measured<T>(count: Int, _ call: nonisolated(nonsending) () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        defer { duration.record(duration: ContinuousClock.now - start) }
        commandCount.increment(by: Int64(count))
        do {
            return try await call()
        } catch let error as RedisError where error.code != .reply {
            errors.increment()
            throw ServiceError(error.code == .timeout ? .kvdbTimeout : .kvdbUnavailable, error.message)
        } catch let error as RedisError {
            errors.increment()
            throw error
        }
    }

    /// Calls handed to the pool's threads (not made on the calling service thread), for tests.
    public var handOffs: Int { client.withLock { $0 }?.handOffs ?? 0 }

    /// The `kvdb` health component: degraded while the most recent call failed.
    public func health() -> [String: HealthReport.Component] {
        guard let client = client.withLock({ $0 }) else {
            return ["kvdb": .init(status: .ok, detail: "not configured")]
        }
        let status = client.status
        let address = client.configuration.address
        if !status.healthy {
            return ["kvdb": .init(status: .degraded, detail: status.lastError ?? "unavailable")]
        }
        return ["kvdb": .init(status: .ok, detail: "\(status.connected)/\(status.size) connected to \(address)")]
    }

    /// Closes the pool (shutdown).
    public func shutdown() {
        client.withLock { $0 }?.shutdown()
    }
}
