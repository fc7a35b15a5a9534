import Logging
import ServiceLifecycle

/// Sends `WATCHDOG=1` at half the interval systemd asked for, while the runtime is alive.
public struct WatchdogService: Service, CustomStringConvertible {
    public var description: String { "WatchdogService" }
    let notifier: SystemdNotifier
    let interval: Duration

    public init(notifier: SystemdNotifier, interval: Duration) {
        self.notifier = notifier
        self.interval = interval
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            notifier.watchdog()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval / 2) }
        }
    }
}

/// Tells systemd `STOPPING=1` as soon as a graceful shutdown begins.
public struct StoppingNotifierService: Service, CustomStringConvertible {
    public var description: String { "StoppingNotifierService" }
    let notifier: SystemdNotifier
    let logger: Logger

    public init(notifier: SystemdNotifier, logger: Logger) {
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        logger.notice("shutting down")
        notifier.stopping()
    }
}
