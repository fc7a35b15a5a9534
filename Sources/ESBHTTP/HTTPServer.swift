import ESBCore
import Foundation
import Hummingbird
import Logging
import NIOCore

/// Builds the one HTTP listener: channels, admin API, dashboard, metrics.
public enum HTTPServer {
    /// The Hummingbird application for `state`, bound to `[main] bind`.
    /// - Parameter onListening: called with the bound port once the listener accepts.
    public static func makeApplication(
        state: ServerState, runtime: ServiceRuntime, metrics: MetricsExporter, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void
    ) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.middlewares.add(RequestMetricsMiddleware(metrics: RequestMetrics()))
        let knownRoutes = KnownRoutes()
        router.middlewares.add(JSONErrorMiddleware(knownRoutes: knownRoutes, state: state))
        router.middlewares.add(ChannelMiddleware(channels: runtime.channels, invoker: runtime.invoker))

        SystemRoutes(state: state, metrics: metrics).register(on: router)
        let api = router.group("/esb/api").add(middleware: AdminAuthMiddleware(state: state))
        AdminRoutes().register(on: api)
        ServiceRoutes(runtime: runtime).register(on: api)
        for (kind, path) in ObjectRoutes.paths {
            ObjectRoutes(store: runtime.objects, kind: kind, path: path).register(on: api)
        }
        AMQPRoutes(amqp: runtime.amqp).register(on: api)
        AsyncRoutes(store: runtime.asyncStore).register(on: api)
        EnmasseRoutes(store: runtime.objects).register(on: api)
        DashboardRoutes(state: state, runtime: runtime, sessions: DashboardSessions()).register(on: router)

        knownRoutes.record(router.routes)

        let bind = state.config.main.bind
        return Application(
            router: router,
            configuration: .init(address: .hostname(bind.host, port: bind.port), serverName: "SwiftESB"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? bind.port) },
            logger: logger
        )
    }
}
