import Logging
import ServiceLifecycle

/// Applies object changes other servers of the cluster commit (§12: live on every server
/// within 2 s), until shutdown.
public struct ObjectChangeFeed: ServiceLifecycle.Service, CustomStringConvertible {
    public var description: String { "ObjectChangeFeed" }
    let store: ObjectStore
    let logger: Logger

    public init(store: ObjectStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [store, logger] in await store.followOtherServers(logger: logger) }
    }
}
