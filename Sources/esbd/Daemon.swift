import ESBConfig
import ESBCore
import ESBHTTP
import ESBHotDeploy
import ESBStore
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// Composes the server from its parts and runs it until SIGTERM/SIGINT.
enum Daemon {
    /// sysexits' EX_CONFIG: systemd's unit does not restart on it.
    static let configErrorStatus: Int32 = 78

    static func run(configPath: String) async -> Int32 {
        var loaded: ServerConfig.Loaded
        do {
            loaded = try ServerConfig.load(path: configPath)
            try loaded.config.readSecretFiles()
        } catch {
            FileHandle.standardError.write(Data("esbd: configuration error\n\(error)\n".utf8))
            return configErrorStatus
        }
        let config = loaded.config
        let logSettings = LogSettings(level: config.main.logLevel, format: config.main.logFormat)
        StderrLogHandler.bootstrap(settings: logSettings)
        var logger = Logger(label: "esbd")
        logger[metadataKey: "esb.server"] = "\(config.main.name)"
        for warning in loaded.warnings { logger.warning("\(warning)") }

        let credentials: AdminCredentials
        let secrets: SecretBox
        do {
            credentials = try AdminCredentials(config: config)
            secrets = try SecretBox(keyFile: config.crypto.secretKeyPath)
            try FileManager.default.createDirectory(atPath: config.main.workDir, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: config.hotDeploy.pickupDir, withIntermediateDirectories: true)
        } catch {
            logger.critical("configuration error: \(error)")
            return configErrorStatus
        }
        // Another local user who can write code or read secrets could take the server over.
        let modeProblems = config.fileModeProblems()
        if !modeProblems.isEmpty {
            logger.critical("refusing to start: files other users can change or read\n\(ConfigError(modeProblems))")
            return configErrorStatus
        }

        let notifier = SystemdNotifier()
        let opened = await notifier.extendingStartTimeout { [logger] () async -> Result<ODB, StoreError> in
            do throws(StoreError) {
                return .success(try await ODB.open(config: config.odb, logger: logger) { number, error in
                    logger.warning("ODB not reachable (attempt \(number)), retrying: \(error)")
                })
            } catch {
                return .failure(error)
            }
        }
        let odb: ODB
        switch opened {
        case .success(let opened):
            odb = opened
        case .failure(let error):
            logger.critical("\(error)")
            // A refusal (credentials, missing database, newer schema) needs the operator;
            // an unreachable server is worth systemd's restart.
            return error.cause == .refused ? configErrorStatus : 1
        }

        if let status = await refusal(odb: odb, secrets: secrets, config: config, logger: logger) {
            await odb.close()
            return status
        }
        let cluster: ClusterMembership
        do {
            cluster = try await ClusterMembership.join(odb: odb, name: config.main.name, cluster: config.cluster,
                                                       address: "\(config.main.bind.host):\(config.main.bind.port)", logger: logger)
        } catch {
            logger.critical("\(error)")
            await odb.close()
            return error.cause == .refused ? configErrorStatus : 1
        }
        let state = ServerState(config: config, credentials: credentials, odb: odb, secrets: secrets,
                                logSettings: logSettings, cluster: cluster)
        let metrics = MetricsExporter(server: config.main.name)
        let runtime: ServiceRuntime
        do {
            runtime = try ServiceRuntime(state: state, logger: logger)
        } catch {
            logger.critical("cannot set up services: \(error)")
            return 1
        }
        await notifier.extendingStartTimeout { [logger] in await deployAtStart(runtime: runtime, logger: logger) }
        // Loaded before the listener accepts; pools connect in the background: a broker that
        // is down delays nothing.
        await runtime.channels.start()
        await runtime.amqp.start()
        await runtime.http.start()
        // Services are deployed and the pools they send through exist: consumers may start.
        await runtime.amqpChannels.start()
        await runtime.scheduler.start()
        metrics.addRefresher { runtime.amqp.refreshGauges() }
        metrics.addRefresher { runtime.amqpChannels.refreshGauges() }
        let startupServices = OnceListening { await runtime.startup.run() }

        let app: Application<RouterResponder<ESBRequestContext>>
        do {
            app = try HTTPServer.makeApplication(state: state, runtime: runtime, metrics: metrics, logger: logger) { [logger] port in
                logger.notice("listening", metadata: ["esb.bind": "\(config.main.bind.host):\(port)",
                                                      "esb.tls": "\(config.main.usesTLS)"])
                cluster.listening(at: "\(config.main.bind.host):\(port)")
                // Startup services run once the listener accepts; READY=1 does not wait for them.
                startupServices.listenerIsUp()
                notifier.ready()
            }
        } catch {
            logger.critical("configuration error: \(error)")
            return configErrorStatus
        }

        // Started in this order, stopped in reverse: what calls Redis, brokers and HTTP peers
        // (requests, startup services, the scheduler) stops before the pools it calls drain.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            // First to start, last to stop: the name is held while anything runs.
            .init(service: cluster),
            .init(service: runtime.kvdb),
            .init(service: runtime.amqp),
            .init(service: runtime.http),
            // After the pools it rebuilds, so it stops before they drain.
            .init(service: ObjectChangeFeed(store: runtime.objects, logger: logger), successTerminationBehavior: .ignore),
            .init(service: runtime.asyncScheduler),
            .init(service: runtime.scheduler),
            // Request tasks run on the service threads: a channel request is read, served and
            // answered with no hop between thread pools (the executor grows past blocked services).
            .init(service: ExecutorPreferringService(app, executor: runtime.invoker.executor)),
            // Told about SIGTERM before the HTTP server: consumers cancel at once, and their
            // in-flight deliveries finish before the pools their services send through drain.
            .init(service: runtime.amqpChannels),
            .init(service: startupServices, successTerminationBehavior: .ignore),
            .init(service: runtime.pickup, successTerminationBehavior: .ignore),
            .init(service: DeploymentFeed(store: runtime.deployments, deployer: runtime.deployer, logger: logger),
                  successTerminationBehavior: .ignore),
            .init(service: ReloadService(state: state, notifier: notifier, logger: logger),
                  successTerminationBehavior: .ignore),
        ]
        if let interval = SystemdNotifier.watchdogInterval() {
            services.append(.init(service: WatchdogService(notifier: notifier, interval: interval),
                                  successTerminationBehavior: .ignore))
        }
        // Last in the list, so it is the first told about a graceful shutdown.
        services.append(.init(service: StoppingNotifierService(notifier: notifier, logger: logger),
                              successTerminationBehavior: .ignore))

        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(config.main.gracefulShutdownSeconds)
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch {
            logger.critical("server stopped on an error: \(error)")
            return 1
        }
        do {
            try await runtime.deployments.endRun()
        } catch {
            logger.error("cannot record the clean stop: \(error)")
        }
        await odb.close()
        logger.notice("stopped")
        return 0
    }

    /// Why `odb` must serve no server, as the exit status, after logging it: an ODB `esb odb copy`
    /// copied from or is copying into; stored secrets the `[crypto]` key cannot open (every
    /// server of a cluster seals and opens them with one key, or each connection that needs a
    /// password would fail later, one by one). nil when it may serve.
    static func refusal(odb: ODB, secrets: SecretBox, config: ServerConfig, logger: Logger) async -> Int32? {
        do {
            if let refusal = try await ODBCopy.refusal(odb) {
                logger.critical("refusing to start: [odb] \(refusal)")
                return configErrorStatus
            }
            if let object = try await ObjectStore(odb: odb, secrets: secrets, kinds: ObjectKinds.all).secretTheKeyCannotOpen() {
                logger.critical("refusing to start: the key in [crypto] secret_key_path '\(config.crypto.secretKeyPath)' cannot decrypt the secrets stored in the ODB (first: \(object.kind) '\(object.name)'); every server sharing an ODB needs the key that sealed them")
                return configErrorStatus
            }
            return nil
        } catch {
            logger.critical("cannot read the ODB: \(StoreError.describe(error))")
            return 1
        }
    }

    /// Redeploys the registry, then what waits in the pickup directory.
    static func deployAtStart(runtime: ServiceRuntime, logger: Logger) async {
        do {
            let quarantined = try await runtime.deployments.beginRun(inFlight: runtime.ledger.previousRun)
            for unit in quarantined {
                logger.critical("unit quarantined: it had a call in flight in \(DeploymentStore.quarantineAfterCrashes) crashes in a row; deploy it again to load it",
                                metadata: ["esb.unit": "\(unit)"])
            }
            let outcomes = try await runtime.deployer.restore()
            let failed = outcomes.filter { $0.status != .deployed }.count
            logger.notice("registry restored", metadata: ["esb.units": "\(outcomes.count)", "esb.failed": "\(failed)",
                                                          "esb.cached": "\(outcomes.filter(\.cached).count)"])
        } catch {
            logger.error("cannot read the deployment registry: \(error)")
        }
        await runtime.pickup.deployExisting()
    }
}

