import ESBService
import Foundation

/// Dropped into esbd by Benchmarks/amqp.py: `total` persistent 256-byte sends through an
/// outgoing connection from `concurrency` tasks, each awaiting its own confirm.
struct AMQPBench: Service {
    static let name = "bench.amqp"

    struct Input: Decodable {
        var total: Int
        var concurrency: Int
        var queue: String
        var outconn: String
    }

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let input = try request.decode(Input.self)
        let body = Data(repeating: UInt8(ascii: "x"), count: 256)
        let perTask = input.total / input.concurrency
        let started = ContinuousClock.now
        var latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<input.concurrency {
                group.addTask {
                    var mine: [Double] = []
                    mine.reserveCapacity(perTask)
                    for _ in 0..<perTask {
                        let sent = ContinuousClock.now
                        try await context.outgoing.amqp.send(body, outconn: input.outconn, exchange: "", routingKey: input.queue,
                                                             properties: AMQPProperties(deliveryMode: 2))
                        let elapsed = ContinuousClock.now - sent
                        mine.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        latencies.sort()
        let count = latencies.count
        return try .json(["messages": Double(count), "seconds": seconds, "rate": Double(count) / seconds,
                          "p50_ms": latencies[count / 2] * 1000, "p99_ms": latencies[Int(Double(count) * 0.99)] * 1000])
    }
}
