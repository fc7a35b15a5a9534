import ESBConfig
import Logging
import ServiceLifecycle
import UnixSignals

/// Re-reads server.conf on SIGHUP and applies what can change live, telling systemd
/// `RELOADING=1` before and `READY=1` after. A broken file keeps the old configuration.
public struct ReloadService: Service, CustomStringConvertible {
    public var description: String { "ReloadService" }
    let state: ServerState
    let notifier: SystemdNotifier
    let logger: Logger

    public init(state: ServerState, notifier: SystemdNotifier, logger: Logger) {
        self.state = state
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            reload()
        }
    }

    /// One reload, as on SIGHUP.
    public func reload() {
        notifier.reloading()
        defer { notifier.ready() }
        let path = state.config.path
        logger.notice("reloading configuration", metadata: ["esb.config": "\(path)"])
        do {
            var loaded = try ServerConfig.load(path: path)
            try loaded.config.readSecretFiles()
            let modeProblems = loaded.config.fileModeProblems()
            if !modeProblems.isEmpty { throw ConfigError(modeProblems) }
            let credentials = try AdminCredentials(config: loaded.config)
            for warning in loaded.warnings { logger.warning("\(warning)") }
            let restartNeeded = state.apply(loaded.config, credentials: credentials)
            for note in restartNeeded {
                logger.warning("\(note): needs a restart to take effect")
            }
            logger.debug("reload applied", metadata: ["esb.config": "\(path)"])
            logger.notice("configuration reloaded", metadata: ["esb.log_level": "\(loaded.config.main.logLevel)"])
        } catch {
            logger.error("reload failed; keeping the configuration in force:\n\(error)")
        }
    }
}
