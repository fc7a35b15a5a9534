import Foundation
import Testing

/// Reliability targets R15 and R16: an AMQP channel consuming while the broker is restarted
/// or killed, or esbd is killed; and a service that always fails. R15 disturbs every
/// connection to the broker, so scripts/reliability runs these alone.
@Suite(.serialized) struct AMQPChannelReliabilityTests {
    static var reduced: Bool { ProcessInfo.processInfo.environment["ESB_RELIABILITY_REDUCED"] == "1" }
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// A server consuming `queue` through channel `r` into the recorder service.
    func consumingServer(queue: String, record: String, channel: [String: Any]) async throws -> TestServer {
        let server = try TestServer()
        try await server.start()
        let definition = try await server.request("POST", "/esb/api/definitions/amqp", body: json([
            "name": "broker", "host": AMQPPeer.host, "port": AMQPPeer.port, "username": "guest", "password": "guest",
            "connect_timeout_ms": 2000, "heartbeat": 5,
        ]), credentials: server.admin)
        #expect(definition.status == 201)
        try server.drop("r.consume.swift", AMQPChannelTests.recorder(name: "r.consume", record: record))
        try await server.waitForDeployment("r.consume.swift")
        let created = try await server.request("POST", "/esb/api/channels/amqp", body: json(
            ["name": "r", "def": "broker", "queue": queue, "service": "r.consume"].merging(channel) { $1 }), credentials: server.admin)
        #expect(created.status == 201, "\(created.text)")
        return server
    }

    /// Publishes `total` numbered persistent messages, consumes them through a channel while
    /// `disrupt` runs once a tenth were handled, then checks every one was handled.
    func consumeThrough(_ label: String, _ disrupt: @escaping @Sendable (TestServer) async throws -> Void) async throws {
        let total = Self.reduced ? 3000 : 20_000
        let queue = AMQPPeer.uniqueName("r15")
        try await AMQPPeer.declare(queue)
        let record = TestEnvironment.temporaryDirectory("r15") + "/calls.jsonl"
        // 2 consumers × prefetch 10 × 50 ms a call: about 400 a second, slower than the
        // publisher, so the disruption finds deliveries in flight and messages still queued.
        let server = try await consumingServer(queue: queue, record: record, channel: ["consumers": 2, "prefetch": 10])
        defer { Task { await server.stop() } }
        try await AMQPPeer.publish(queue, "sleep:50:", count: total, numbered: true)
        try await AMQPChannelTests.waitFor("a tenth handled", timeout: 300) { AMQPChannelTests.records(record).count >= total / 10 }
        let inFlightAtTheCut = Set(AMQPChannelTests.records(record).compactMap { $0["body"] as? String }).count < total
        try await disrupt(server)
        try await AMQPChannelTests.waitFor("every message handled and acked", timeout: 600) {
            let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
            return ready == 0 && unacked == 0 && Set(AMQPChannelTests.records(record).compactMap { $0["body"] as? String }).count >= total
        }
        let bodies = AMQPChannelTests.records(record).compactMap { $0["body"] as? String }
        let handled = Set(bodies)
        let lost = (0..<total).map { "sleep:50:\($0)" }.filter { !handled.contains($0) }
        let redelivered = AMQPChannelTests.records(record).filter { $0["redelivered"] as? Bool == true }.count
        print("RELIABILITY R15 \(label): \(total) published, \(handled.count) handled, lost \(lost.count), "
              + "duplicates \(bodies.count - handled.count), redelivered calls \(redelivered)")
        #expect(lost.isEmpty, "never handled: \(lost.prefix(10))")
        #expect(inFlightAtTheCut, "the disruption came while messages were still to be consumed")
        // A broker killed -9 may forget acks it had not yet written down: those messages come
        // back too (TARGETS.md counts them). Otherwise only what was in flight at the cut
        // (2 consumers × prefetch 10) is handled twice.
        if label != "broker kill -9" {
            #expect(bodies.count - handled.count <= 40, "duplicates only for what was in flight at the cut")
        }
        await AMQPPeer.delete(queue)
    }

    @Test func r15BrokerStopAppStartAppMidwayLosesNothing() async throws {
        try await consumeThrough("broker stop_app/start_app") { _ in
            try await BrokerControl.rabbitmqctl("stop_app")
            try await Task.sleep(for: .seconds(2))
            try await BrokerControl.rabbitmqctl("start_app")
        }
    }

    @Test func r15BrokerKilledMidwayLosesNothing() async throws {
        try await consumeThrough("broker kill -9") { _ in try await BrokerControl.killAndRestart() }
    }

    @Test func r15EsbdKilledMidwayLosesNothing() async throws {
        try await consumeThrough("esbd kill -9") { server in
            server.signal(SIGKILL)
            _ = await server.waitForExit()
            try await server.start()
        }
    }

    @Test func r16AServiceThatAlwaysFailsIsCalledMaxAttemptsTimesThenDeadLettered() async throws {
        let total = Self.reduced ? 50 : 500
        let queue = AMQPPeer.uniqueName("r16"), dead = queue + ".dlq"
        try await AMQPPeer.declare(queue, deadLetter: dead)
        let record = TestEnvironment.temporaryDirectory("r16") + "/calls.jsonl"
        let server = try await consumingServer(queue: queue, record: record,
                                               channel: ["max_attempts": 3, "retry_delay_ms": 50, "prefetch": 20])
        defer { Task { await server.stop() } }
        try await AMQPPeer.publish(queue, "fail:", count: total, numbered: true)
        try await AMQPChannelTests.waitFor("every message dead-lettered", timeout: 300) { try await AMQPPeer.count(dead) >= total }
        try await Task.sleep(for: .milliseconds(500))
        let calls = Dictionary(grouping: AMQPChannelTests.records(record), by: { $0["body"] as? String ?? "" })
        let attempts = Set(calls.values.map { $0.compactMap { $0["attempt"] as? Int }.sorted() })
        let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
        let deadLettered = try await AMQPPeer.count(dead)
        print("RELIABILITY R16: \(total) published, \(calls.count) called, attempts per message \(attempts), "
              + "dead-lettered \(deadLettered), left ready \(ready), unacked \(unacked)")
        #expect(calls.count == total)
        #expect(attempts == [[1, 2, 3]], "each message called max_attempts times")
        #expect(deadLettered == total)
        #expect(ready == 0 && unacked == 0, "the queue drains; nothing stuck unacked")
        await AMQPPeer.delete(queue)
        await AMQPPeer.delete(dead)
    }
}
