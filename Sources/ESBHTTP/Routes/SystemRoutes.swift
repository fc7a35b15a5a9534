import ESBCore
import Foundation
import Hummingbird

/// Routes that need no credentials: liveness, readiness, Prometheus metrics.
struct SystemRoutes {
    let state: ServerState
    let metrics: MetricsExporter

    func register(on router: Router<BasicRequestContext>) {
        router.get("/esb/ping") { _, _ in
            try JSON.response(["status": "ok", "server": state.config.main.name])
        }
        router.get("/esb/health") { _, _ in
            let report = await state.health()
            return try JSON.response(report, status: report.isUnusable ? .serviceUnavailable : .ok)
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
    }
}
