import ESBHotDeploy
import Logging
import ServiceLifecycle

/// Deploys here what other servers of the cluster deploy (§12: deploy once, live
/// everywhere), until shutdown. On SQLite (one server) it has nothing to do.
public struct DeploymentFeed: ServiceLifecycle.Service, CustomStringConvertible {
    public var description: String { "DeploymentFeed" }
    let store: DeploymentStore
    let deployer: Deployer
    let logger: Logger

    public init(store: DeploymentStore, deployer: Deployer, logger: Logger) {
        self.store = store
        self.deployer = deployer
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { [store, deployer, logger] in
            await store.followOtherServers(logger: logger) { unit in await deployer.follow(unit: unit) }
        }
    }
}
