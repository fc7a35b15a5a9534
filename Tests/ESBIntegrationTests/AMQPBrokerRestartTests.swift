import ESBAMQP
import Foundation
import Synchronization
import Testing

/// Reliability targets R1 and R4: the broker restarted, killed, or closing every connection while
/// sends go on. These disturb every connection to the broker, so scripts/test runs this
/// suite on its own, after the others.
@Suite(.serialized) struct AMQPBrokerRestartTests {
    struct Figures: CustomStringConvertible {
        var attempts = 0
        var confirmed: Set<Int> = []
        var failures: [String: Int] = [:]
        var description: String {
            "attempts \(attempts), confirmed \(confirmed.count), failed \(failures.values.reduce(0, +)) \(failures)"
        }
    }

    final class Shared<Value: Sendable>: Sendable {
        private let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func withLock<Result>(_ body: (inout Value) -> Result) -> Result { value.withLock { body(&$0) } }
    }

    /// 20,000 persistent, confirmed sends from 32 tasks; `disrupt` runs once 5,000 are in.
    func sendThrough(_ label: String, _ disrupt: @escaping @Sendable () async throws -> Void) async throws {
        let queue = AMQPPeer.uniqueName("r1")
        try await AMQPPeer.declare(queue)
        var broker = BrokerConfiguration(host: AMQPPeer.host)
        broker.port = AMQPPeer.port
        broker.connectTimeoutMilliseconds = 1000
        var configuration = PoolConfiguration(name: "r1", broker: broker, returnTagHeader: "x-esb-msg-id")
        configuration.acquireTimeoutMilliseconds = 1000
        configuration.maximumBackoffSeconds = 4
        let pool = Pool(configuration)
        let figures = Shared(Figures())
        let total = 20_000
        let disruption = Task {
            while figures.withLock({ $0.confirmed.count }) < 5000 { try await Task.sleep(for: .milliseconds(20)) }
            try await disrupt()
        }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    while true {
                        let index = figures.withLock { figures -> Int? in
                            guard figures.attempts < total else { return nil }
                            figures.attempts += 1
                            return figures.attempts
                        }
                        guard let index else { return }
                        let message = OutgoingMessage(exchange: "", routingKey: queue, body: Data(String(index).utf8),
                                                      properties: BasicProperties(deliveryMode: 2))
                        do {
                            try await pool.send(message)
                            figures.withLock { _ = $0.confirmed.insert(index) }
                        } catch let error as AMQPError {
                            figures.withLock { $0.failures[error.code.rawValue, default: 0] += 1 }
                        } catch {
                            figures.withLock { $0.failures["unexpected: \(error)", default: 0] += 1 }
                        }
                    }
                }
            }
        }
        try await disruption.value
        _ = await pool.shutdown()
        let stored = try JSONDecoder().decode([String].self, from: Data(try await AMQPPeer.run(["bodies", queue]).utf8))
        let inQueue = Set(stored.compactMap(Int.init))
        let result = figures.withLock { $0 }
        let lost = result.confirmed.subtracting(inQueue)
        print("R1 \(label): \(result); in queue \(stored.count), lost \(lost.count), duplicates \(stored.count - inQueue.count)")
        #expect(lost.isEmpty, "confirmed but not in the queue: \(lost.sorted().prefix(20))")
        #expect(result.confirmed.count > total / 2)
        #expect(result.failures.values.reduce(0, +) > 0, "the disruption should have failed some sends")
        let named: Set<String> = ["connection_failed", "pool_timeout", "confirm_timeout", "channel_closed"]
        #expect(Set(result.failures.keys).isSubset(of: named), "\(result.failures)")
        await AMQPPeer.delete(queue)
    }

    @Test func confirmedSendsSurviveABrokerStopAndStart() async throws {
        try await sendThrough("stop_app/start_app") {
            try await BrokerControl.rabbitmqctl("stop_app")
            try await Task.sleep(for: .seconds(2))
            try await BrokerControl.rabbitmqctl("start_app")
        }
    }

    @Test func confirmedSendsSurviveAKillOfTheBroker() async throws {
        try await sendThrough("kill -9") { try await BrokerControl.killAndRestart() }
    }

    @Test func poolsReconnectAfterTheBrokerClosesEveryConnection() async throws {
        let queue = AMQPPeer.uniqueName("r4")
        try await AMQPPeer.declare(queue)
        let tests = AMQPOutconnTests()
        let server = try await tests.serverWithOutconn()
        defer { Task { await server.stop() } }
        try await tests.waitConnected(server)
        try await BrokerControl.rabbitmqctl("close_all_connections", "R4: closed by the test")
        var sawDegraded = false
        for _ in 0..<250 where !sawDegraded {
            let health = try await server.request("GET", "/esb/health", credentials: server.admin)
            sawDegraded = health.json?["status"] as? String == "degraded"
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(sawDegraded, "/esb/health shows degraded while the pool reconnects")
        try await tests.waitConnected(server)
        let published = try await tests.publish(server, ["payload": "after", "routing_key": queue])
        #expect(published.status == 200, "\(published.text)")
        #expect(try await AMQPPeer.get(queue).map(\.body) == ["after"])
        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        let pool = ((health.json?["components"] as? [String: Any])?["amqp.out"] as? [String: Any])?["pool"] as? [String: Any]
        let reconnects = (pool?["connections"] as? [[String: Any]])?.compactMap { $0["reconnects"] as? Int } ?? []
        #expect(reconnects.allSatisfy { $0 >= 1 }, "\(reconnects)")
        #expect(server.log.contains("R4: closed by the test"))
        await AMQPPeer.delete(queue)
    }
}
