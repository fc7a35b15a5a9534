import ESBConfig
import ESBStore
import Foundation
import Logging
import Synchronization

/// What the running server shares between its parts: the ODB, secrets, and the settings
/// that SIGHUP may change.
public final class ServerState: Sendable {
    public let odb: ODB
    public let secrets: SecretBox
    public let logSettings: LogSettings
    /// When the process started serving.
    public let startedAt: Date
    /// This server's place in its cluster (nil in tests that run no daemon).
    public let cluster: ClusterMembership?

    private struct Live {
        var config: ServerConfig
        var credentials: AdminCredentials
    }
    private let live: Mutex<Live>
    private let reloadObservers = Mutex<[@Sendable (ServerConfig) -> Void]>([])
    private let healthSources = Mutex<[@Sendable () async -> [String: HealthReport.Component]]>([])

    public init(config: ServerConfig, credentials: AdminCredentials, odb: ODB, secrets: SecretBox,
                logSettings: LogSettings, cluster: ClusterMembership? = nil) {
        self.odb = odb
        self.cluster = cluster
        self.secrets = secrets
        self.logSettings = logSettings
        self.startedAt = Date()
        live = Mutex(Live(config: config, credentials: credentials))
        if let cluster { addHealthSource { await cluster.health() } }
    }

    /// The configuration in force.
    public var config: ServerConfig { live.withLock { $0.config } }
    /// `[main] name` in force, without copying the whole configuration.
    public var name: String { live.withLock { $0.config.main.name } }
    /// The admin credentials in force.
    public var credentials: AdminCredentials { live.withLock { $0.credentials } }

    /// Applies a re-read configuration; returns a line for each change that needs a restart.
    public func apply(_ config: ServerConfig, credentials: AdminCredentials) -> [String] {
        var applied = config
        let old = live.withLock { state in
            // What needs a restart (the listener, names, stores, keys) keeps its running value until then.
            applied.main.name = state.config.main.name
            applied.main.bind = state.config.main.bind
            applied.main.workDir = state.config.main.workDir
            applied.main.tlsCertPath = state.config.main.tlsCertPath
            applied.main.tlsKeyPath = state.config.main.tlsKeyPath
            applied.main.idleTimeoutSeconds = state.config.main.idleTimeoutSeconds
            applied.odb = state.config.odb
            applied.cluster = state.config.cluster
            applied.crypto = state.config.crypto
            defer { state = Live(config: applied, credentials: credentials) }
            return state.config
        }
        logSettings.update(level: applied.main.logLevel, format: applied.main.logFormat)
        for observer in reloadObservers.withLock({ $0 }) { observer(applied) }
        return Self.changesNeedingRestart(from: old, to: config)
    }

    /// Calls `observer` with each configuration SIGHUP applies (parts that rebuild themselves).
    public func onReload(_ observer: @escaping @Sendable (ServerConfig) -> Void) {
        reloadObservers.withLock { $0.append(observer) }
    }

    /// Adds components to every health report (kvdb, AMQP pools…).
    public func addHealthSource(_ source: @escaping @Sendable () async -> [String: HealthReport.Component]) {
        healthSources.withLock { $0.append(source) }
    }

    /// Checks every component; the ODB is critical, the others only degrade.
    public func health() async -> HealthReport {
        var components: [String: HealthReport.Component] = [:]
        if let problem = await odb.check() {
            components["odb"] = .init(status: .degraded, detail: problem.message, critical: true, engine: odb.engine.rawValue)
        } else {
            components["odb"] = .init(status: .ok, detail: "\(odb.engine.rawValue) \(odb.location)", critical: true,
                                      engine: odb.engine.rawValue)
        }
        for source in healthSources.withLock({ $0 }) {
            components.merge(await source()) { $1 }
        }
        return HealthReport(server: config.main.name, components: components)
    }

    static func changesNeedingRestart(from old: ServerConfig, to new: ServerConfig) -> [String] {
        var notes: [String] = []
        if old.main.name != new.main.name {
            notes.append("[main] name changed from \(old.main.name) to \(new.main.name)")
        }
        if old.main.bind != new.main.bind {
            notes.append("[main] bind changed from \(old.main.bind) to \(new.main.bind)")
        }
        if old.main.workDir != new.main.workDir {
            notes.append("[main] work_dir changed from \(old.main.workDir) to \(new.main.workDir)")
        }
        if old.main.tlsCertPath != new.main.tlsCertPath || old.main.tlsKeyPath != new.main.tlsKeyPath {
            notes.append("[main] tls_cert_path or tls_key_path changed")
        }
        if old.main.idleTimeoutSeconds != new.main.idleTimeoutSeconds {
            notes.append("[main] idle_timeout_seconds changed from \(old.main.idleTimeoutSeconds) to \(new.main.idleTimeoutSeconds)")
        }
        if old.odb != new.odb { notes.append("[odb] changed") }
        if old.cluster != new.cluster { notes.append("[cluster] changed") }
        if old.crypto != new.crypto { notes.append("[crypto] changed") }
        return notes
    }
}
