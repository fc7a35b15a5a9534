import ESBAMQP
import Foundation
import Testing

/// Reliability targets R3 and R5 against the real broker; safe to run beside other tests.
@Suite struct AMQPReliabilityTests {
    /// scripts/testkit/stall_proxy.py in front of the broker; `stall()` makes it stop answering.
    final class StallProxy: Sendable {
        let port: Int
        private let server: ScriptServer

        /// With `tls` (certificate, key), the proxy terminates TLS: a TLS broker.
        init(tls: (certificate: String, key: String)? = nil) async throws {
            port = TestEnvironment.freePort()
            server = try await ScriptServer("scripts/testkit/stall_proxy.py",
                                            [String(port), AMQPPeer.host, String(AMQPPeer.port)] + (tls.map { [$0.certificate, $0.key] } ?? []))
        }

        /// Stalls, and gives the proxy a moment to act on the signal.
        func stall() async throws {
            server.signal(SIGUSR1)
            try await Task.sleep(for: .milliseconds(300))
        }
        func resume() { server.signal(SIGUSR2) }
        func stop() { server.stop() }
    }

    @Test func stalledBrokerFailsSendsAfterTheConfirmTimeoutAndThePoolSurvives() async throws {
        let queue = AMQPPeer.uniqueName("stall")
        try await AMQPPeer.declare(queue)
        let proxy = try await StallProxy()
        defer { proxy.stop() }
        var broker = BrokerConfiguration(host: "127.0.0.1")
        broker.port = proxy.port
        broker.connectTimeoutMilliseconds = 300
        var configuration = PoolConfiguration(name: "stalled", broker: broker, returnTagHeader: "x-esb-msg-id")
        configuration.size = 2
        configuration.confirmTimeoutMilliseconds = 300
        configuration.acquireTimeoutMilliseconds = 300
        configuration.maximumBackoffSeconds = 2
        let pool = Pool(configuration)
        let message = OutgoingMessage(exchange: "", routingKey: queue, body: Data("m".utf8))
        try await sendEventually(pool, message)
        while !pool.connections.allSatisfy({ $0.status == .connected }) { try await Task.sleep(for: .milliseconds(50)) }

        try await proxy.stall()
        var codes: [AMQPError.Code: Int] = [:]
        var failures = 0
        while failures < 100 {
            let outcomes = await withTaskGroup(of: AMQPError?.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        do { try await pool.send(message); return nil } catch { return error as? AMQPError }
                    }
                }
                return await group.reduce(into: [AMQPError?]()) { $0.append($1) }
            }
            for outcome in outcomes {
                let error = try #require(outcome, "a send succeeded through a stalled broker")
                codes[error.code, default: 0] += 1
                failures += 1
            }
        }
        #expect(codes[.confirmTimeout, default: 0] > 0, "\(codes)")
        #expect(Set(codes.keys).isSubset(of: [.confirmTimeout, .poolTimeout]), "\(codes)")
        #expect(pool.connections.allSatisfy { $0.reconnects > 0 }, "stalled connections were discarded")

        proxy.resume()
        try await sendEventually(pool, message)
        #expect(pool.connections.count == 2)
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    @Test func idleConnectionOutlivesThreeHeartbeats() async throws {
        let queue = AMQPPeer.uniqueName("idle")
        try await AMQPPeer.declare(queue)
        var broker = BrokerConfiguration(host: AMQPPeer.host)
        broker.port = AMQPPeer.port
        broker.heartbeatSeconds = 1
        var configuration = PoolConfiguration(name: "idle", broker: broker, returnTagHeader: "x-esb-msg-id")
        configuration.size = 1
        let pool = Pool(configuration)
        let message = OutgoingMessage(exchange: "", routingKey: queue, body: Data("m".utf8))
        try await sendEventually(pool, message)
        // The broker closes a connection that misses two heartbeats; wait past three.
        try await Task.sleep(for: .seconds(4))
        #expect(pool.connections.first?.status == .connected)
        #expect(pool.connections.first?.reconnects == 0)
        try await pool.send(message)
        #expect(pool.connections.first?.reconnects == 0)
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }
}

/// Sends until one succeeds (the pool connects in the background), for up to a minute.
func sendEventually(_ pool: Pool, _ message: OutgoingMessage) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        do {
            try await pool.send(message)
            return
        } catch {
            if ContinuousClock.now > deadline { throw error }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
