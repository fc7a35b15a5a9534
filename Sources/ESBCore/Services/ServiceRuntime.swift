import ESBHotDeploy
import ESBStore
import Foundation
import Logging

/// The service side of the server: registry, invoker, deployer and startup services, built
/// from the configuration once the ODB is open.
public struct ServiceRuntime: Sendable {
    /// The server's shared state (configuration in force, ODB, secrets).
    public let state: ServerState
    public let registry: ServiceRegistry
    public let invoker: ServiceInvoker
    public let deployer: Deployer
    public let deployments: DeploymentStore
    public let startup: StartupServices
    public let pickup: PickupWatcher
    /// Named configuration objects (channels, security definitions, connections).
    public let objects: ObjectStore
    public let channels: ChannelRouter
    /// Pooled outgoing AMQP connections.
    public let amqp: AMQPOutconns
    /// Consumers of queues that invoke services (AMQP channels).
    public let amqpChannels: AMQPChannels
    /// Redis for services.
    public let kvdb: KVDBService
    /// Pooled outgoing HTTP connections.
    public let http: HTTPOutconns
    /// Durable async invocations and retries, and the scheduler that runs them.
    public let asyncStore: AsyncStore
    public let asyncScheduler: AsyncScheduler
    /// Scheduled jobs (`scheduler` objects).
    public let scheduler: Scheduler
    /// Units with a call in flight, mapped to a file in work_dir that outlives a crash.
    public let ledger: InFlightLedger

    /// Builds the runtime; the SDK is the one this process has loaded.
    /// - Throws: ``PluginLoadError`` when the shared SDK cannot be found.
    public init(state: ServerState, logger: Logger) throws {
        let config = state.config
        self.state = state
        registry = ServiceRegistry()
        objects = ObjectStore(odb: state.odb, secrets: state.secrets, kinds: ObjectKinds.all, server: config.main.name)
        amqp = AMQPOutconns(store: objects, logger: logger)
        kvdb = KVDBService(config: config.kvdb, logger: logger)
        http = HTTPOutconns(store: objects, logger: logger)
        state.onReload { [kvdb] config in kvdb.apply(config.kvdb) }
        // On a shared ODB each server runs the async work of the services it has deployed; a
        // SQLite ODB's one server runs all of it (work for a missing service fails there).
        let registry = registry
        var deployedServices: (@Sendable () -> [String])?
        if state.odb.engine == .postgresql {
            deployedServices = { @Sendable in registry.all().map { $0.name } }
        }
        asyncStore = AsyncStore(odb: state.odb, server: config.main.name, lease: .seconds(config.cluster.leaseSeconds),
                                deployedServices: deployedServices)
        ledger = try InFlightLedger(directory: config.main.workDir)
        invoker = ServiceInvoker(registry: registry, executor: ServiceExecutor(threads: max(2, ProcessInfo.processInfo.activeProcessorCount)),
                                 outgoing: OutgoingConnections(amqp: amqp, kvdb: kvdb, http: http), async: asyncStore,
                                 ledger: ledger, logger: logger)
        amqpChannels = AMQPChannels(store: objects, invoker: invoker, server: config.main.name,
                                    gracefulSeconds: { state.config.main.gracefulShutdownSeconds }, logger: logger)
        asyncScheduler = AsyncScheduler(store: asyncStore, invoker: invoker, settings: config.async, logger: logger)
        state.onReload { [asyncScheduler] config in asyncScheduler.apply(config.async) }
        // On a shared ODB each server runs the jobs of the services it has deployed.
        var localServices: (@Sendable () -> Set<String>)?
        if state.odb.engine == .postgresql {
            localServices = { @Sendable in Set(registry.all().map { $0.name }) }
        }
        scheduler = Scheduler(store: objects, odb: state.odb, invoker: invoker, server: config.main.name,
                              lease: .seconds(config.cluster.leaseSeconds), deployedServices: localServices,
                              gracefulSeconds: { state.config.main.gracefulShutdownSeconds }, logger: logger)
        deployments = DeploymentStore(odb: state.odb, server: config.main.name)
        let compiler = SwiftCompiler(swiftc: config.hotDeploy.swiftc, sdk: try SDKLocation.current(),
                                     moduleCachePath: config.main.workDir + "/module-cache",
                                     timeoutSeconds: { state.config.hotDeploy.compileTimeoutSeconds })
        let builder = ServiceBuilder(compiler: compiler, workDirectory: config.main.workDir,
                                     shared: state.odb.engine == .postgresql ? deployments : nil)
        deployer = Deployer(builder: builder, registry: registry, store: deployments, workDirectory: config.main.workDir,
                            logger: logger, backupHistory: { state.config.hotDeploy.backupHistory },
                            extraModulePaths: { state.config.hotDeploy.extraModulePaths })
        startup = StartupServices(config: config, invoker: invoker, logger: logger)
        channels = ChannelRouter(store: objects, logger: logger)
        state.addHealthSource { [amqp] in amqp.health() }
        state.addHealthSource { [amqpChannels] in amqpChannels.health() }
        state.addHealthSource { [kvdb] in kvdb.health() }
        pickup = PickupWatcher(directory: config.hotDeploy.pickupDir, deployer: deployer, logger: logger,
                               deleteAfterPickup: { state.config.hotDeploy.deleteAfterPickup },
                               maxSourceBytes: { state.config.hotDeploy.maxSourceBytes })
    }
}
