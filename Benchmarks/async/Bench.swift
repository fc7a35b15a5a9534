import ESBService
import Foundation

/// The target of the benchmark's invocations: does nothing.
struct Noop: Service {
    static let name = "bench.async.noop"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .empty }
}

/// Accepts `count` durable `invokeAsync` calls, `concurrency` at a time, and answers the
/// acceptance rate and latencies: each call returns only once its record is committed.
struct Accept: Service {
    static let name = "bench.async.accept"
    struct Order: Decodable {
        var count: Int
        var concurrency: Int
    }

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let order = try request.decode(Order.self)
        let clock = ContinuousClock()
        let started = clock.now
        var latencies = try await withThrowingTaskGroup(of: Double.self) { group in
            var latencies: [Double] = []
            latencies.reserveCapacity(order.count)
            for index in 0..<order.count {
                if index >= order.concurrency, let latency = try await group.next() { latencies.append(latency) }
                group.addTask {
                    let start = clock.now
                    _ = try await context.invokeAsync("bench.async.noop", payload: "x")
                    return (clock.now - start) / .microseconds(1) / 1000
                }
            }
            for try await latency in group { latencies.append(latency) }
            return latencies
        }
        let seconds = (clock.now - started) / .seconds(1)
        latencies.sort()
        return try .json([
            "rate": Double(order.count) / seconds,
            "p50_ms": latencies[latencies.count / 2],
            "p99_ms": latencies[min(latencies.count - 1, latencies.count * 99 / 100)],
        ])
    }
}
