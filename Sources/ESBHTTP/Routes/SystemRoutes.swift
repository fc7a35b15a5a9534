import ESBCore
import Foundation
import Hummingbird
import Synchronization

/// Routes that need no credentials: liveness, readiness, Prometheus metrics.
struct SystemRoutes {
    let state: ServerState
    let metrics: MetricsExporter
    let signIns: SignInGuard

    func register(on router: Router<ESBRequestContext>) {
        // Liveness probes and load balancers call this constantly: the body is encoded
        // once per server name (which SIGHUP may change), not once per request.
        let cache = PingBodyCache()
        router.get("/esb/ping") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: cache.body(for: state.name)))
        }
        // Details (addresses, errors, pool states) only for the admin; anyone gets the statuses.
        router.get("/esb/health") { request, context in
            let report = await state.health()
            let status: HTTPResponse.Status = report.isUnusable ? .serviceUnavailable : .ok
            let detailed = (try? AdminAuthMiddleware.authenticate(request, context: context, state: state, signIns: signIns)) != nil
            return detailed ? try JSON.response(report, status: status) : try JSON.response(report.summary, status: status)
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
    }
}

/// The encoded `/esb/ping` body for the current server name.
final class PingBodyCache: Sendable {
    private let cached = Mutex<(name: String, body: ByteBuffer)?>(nil)

    func body(for name: String) -> ByteBuffer {
        cached.withLock { cached in
            if let cached, cached.name == name { return cached.body }
            let data = (try? JSON.encoder.encode(["status": "ok", "server": name])) ?? Data()
            let body = ByteBuffer(bytes: data)
            cached = (name, body)
            return body
        }
    }
}
