import ESBConfig
import ESBCore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// Builds the one HTTP listener: channels, admin API, dashboard, metrics.
public enum HTTPServer {
    /// The Hummingbird application for `state`, bound to `[main] bind`: HTTPS only when
    /// `tls_cert_path` and `tls_key_path` are set, connections closed after
    /// `idle_timeout_seconds` without a request head or with silence that long.
    /// - Parameter onListening: called with the bound port once the listener accepts.
    /// - Throws: ``ConfigError`` when the TLS certificate or key cannot be loaded.
    public static func makeApplication(
        state: ServerState, runtime: ServiceRuntime, metrics: MetricsExporter, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void
    ) throws -> Application<RouterResponder<ESBRequestContext>> {
        let config = state.config
        let signIns = SignInGuard(logger: logger)
        let router = Router(context: ESBRequestContext.self)
        router.middlewares.add(RequestMetricsMiddleware(metrics: RequestMetrics()))
        let knownRoutes = KnownRoutes()
        router.middlewares.add(JSONErrorMiddleware(knownRoutes: knownRoutes, state: state, signIns: signIns))
        router.middlewares.add(ChannelMiddleware(channels: runtime.channels, invoker: runtime.invoker, state: state, signIns: signIns))

        SystemRoutes(state: state, metrics: metrics, signIns: signIns).register(on: router)
        let api = router.group("/esb/api")
            .add(middleware: CrossSiteMiddleware(secure: config.main.usesTLS))
            .add(middleware: AdminAuthMiddleware(state: state, signIns: signIns))
        AdminRoutes(state: state).register(on: api)
        ServiceRoutes(state: state, invoker: runtime.invoker, registry: runtime.registry, deployments: runtime.deployments,
                      deployer: runtime.deployer, startup: runtime.startup).register(on: api)
        for (kind, path) in ObjectRoutes.paths {
            ObjectRoutes(store: runtime.objects, kind: kind, path: path).register(on: api)
        }
        AMQPRoutes(amqp: runtime.amqp).register(on: api)
        AsyncRoutes(store: runtime.asyncStore).register(on: api)
        SchedulerRoutes(store: runtime.objects, scheduler: runtime.scheduler).register(on: api)
        EnmasseRoutes(store: runtime.objects).register(on: api)
        DashboardRoutes(state: state, invoker: runtime.invoker, registry: runtime.registry, deploymentRegistry: runtime.deployments,
                        startup: runtime.startup, asyncStore: runtime.asyncStore, objects: runtime.objects, amqp: runtime.amqp,
                        amqpChannels: runtime.amqpChannels, scheduler: runtime.scheduler,
                        sessions: DashboardSessions(state: state), signIns: signIns)
            .register(on: router)

        knownRoutes.record(router.routes)

        let bind = config.main.bind
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(Int64(config.main.idleTimeoutSeconds))))
        let server: HTTPServerBuilder
        if config.main.usesTLS {
            server = try .tls(http1, tlsConfiguration: try tlsConfiguration(config))
        } else {
            server = http1
            if !isLoopback(bind.host) {
                logger.warning("the listener is bound to \(bind) without TLS: credentials and payloads cross the network in clear; set [main] tls_cert_path and tls_key_path")
            }
        }
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(bind.host, port: bind.port), serverName: "SwiftESB"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? bind.port) },
            logger: logger
        )
    }

    /// TLS 1.2 or later with the PEM chain and key of `[main]`.
    static func tlsConfiguration(_ config: ServerConfig) throws -> TLSConfiguration {
        guard let certPath = config.main.tlsCertPath, let keyPath = config.main.tlsKeyPath else {
            throw ConfigError(file: config.path, "[main] tls_cert_path and tls_key_path go together")
        }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certPath)
        } catch {
            throw ConfigError(file: config.path, "[main] tls_cert_path '\(certPath)': cannot load a PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else {
            throw ConfigError(file: config.path, "[main] tls_cert_path '\(certPath)' holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw ConfigError(file: config.path, "[main] tls_key_path '\(keyPath)': cannot load a PEM private key (\(error))")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
    }
}
