import CoreMetrics
import Hummingbird
import Synchronization

/// Counts requests and records their durations by route pattern, method and status:
/// `esb_http_requests_total` and `esb_http_request_duration_seconds`.
///
/// One locked dictionary lookup per request. Hummingbird's own MetricsMiddleware also keeps
/// an active-request gauge and several lookups, which cost a quarter of `/esb/ping`'s throughput.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: RequestMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            metrics.record(route: context.endpointPath, method: request.method, status: response.status.code,
                           duration: ContinuousClock.now - start)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            metrics.record(route: context.endpointPath, method: request.method, status: status,
                           duration: ContinuousClock.now - start)
            throw error
        }
    }
}

/// The per-series metric handles, created once per (route, method, status).
final class RequestMetrics: Sendable {
    private struct Key: Hashable {
        var route: String
        var method: HTTPRequest.Method
        var status: Int
    }
    private struct Series: Sendable {
        var requests: CoreMetrics.Counter
        var duration: CoreMetrics.Timer
    }
    private let series = Mutex<[Key: Series]>([:])

    func record(route: String?, method: HTTPRequest.Method, status: Int, duration: Duration) {
        // Hummingbird names every unmatched path `NotFound`, so scanners cannot explode the
        // label set; nil only when no router ran at all.
        let key = Key(route: route ?? "unmatched", method: method, status: status)
        let handles = series.withLock { series in
            if let existing = series[key] { return existing }
            let dimensions = [("route", key.route), ("method", key.method.rawValue), ("status", String(status))]
            let created = Series(
                requests: CoreMetrics.Counter(label: "esb_http_requests_total", dimensions: dimensions),
                duration: CoreMetrics.Timer(label: "esb_http_request_duration_seconds", dimensions: dimensions,
                                            preferredDisplayUnit: .seconds))
            series[key] = created
            return created
        }
        handles.requests.increment()
        let (seconds, attoseconds) = duration.components
        handles.duration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
