import ESBAMQP
import ESBCore
import ESBConcurrency
import Foundation
import Testing

/// The librabbitmq wrapper and its pool against the real broker; arrivals checked with pika.
@Suite struct AMQPPoolTests {
    static func pool(_ name: String, confirm: Bool = true, size: Int = 2, port: Int = AMQPPeer.port,
                     acquireMilliseconds: Int = 5000) -> Pool {
        var broker = BrokerConfiguration(host: AMQPPeer.host)
        broker.port = port
        broker.connectTimeoutMilliseconds = 1000
        var configuration = PoolConfiguration(name: name, broker: broker, returnTagHeader: "x-esb-msg-id")
        configuration.size = size
        configuration.confirm = confirm
        configuration.acquireTimeoutMilliseconds = acquireMilliseconds
        return Pool(configuration)
    }

    @Test func everyPropertyAndHeaderKindArrives() async throws {
        let queue = AMQPPeer.uniqueName("props")
        try await AMQPPeer.declare(queue, exchange: queue, maxPriority: 9)
        let pool = Self.pool("props")
        let properties = BasicProperties(
            contentType: "application/json", contentEncoding: "utf-8", deliveryMode: 2, priority: 7,
            correlationId: "corr-1", replyTo: "replies", expiration: 60000, messageId: "msg-1",
            timestamp: 1_700_000_000, type: "order.created", userId: "guest", appId: "esb-tests",
            headers: ["s": .string("text"), "i": .int(-42), "d": .double(2.5), "b": .bool(true),
                      "t": .table(["inner": .string("x"), "n": .int(1)]),
                      "a": .array([.int(1), .string("two"), .array([.bool(false)])])])
        try await pool.send(OutgoingMessage(exchange: queue, routingKey: queue, body: Data("{\"a\":1}".utf8), properties: properties))
        let messages = try await AMQPPeer.get(queue)
        #expect(messages.count == 1)
        let message = try #require(messages.first)
        #expect(message.body == "{\"a\":1}")
        #expect(message.properties["content_type"] == .string("application/json"))
        #expect(message.properties["content_encoding"] == .string("utf-8"))
        #expect(message.properties["delivery_mode"] == .int(2))
        #expect(message.properties["priority"] == .int(7))
        #expect(message.properties["correlation_id"] == .string("corr-1"))
        #expect(message.properties["reply_to"] == .string("replies"))
        #expect(message.properties["expiration"] == .string("60000"))
        #expect(message.properties["message_id"] == .string("msg-1"))
        #expect(message.properties["timestamp"] == .int(1_700_000_000))
        #expect(message.properties["type"] == .string("order.created"))
        #expect(message.properties["user_id"] == .string("guest"))
        #expect(message.properties["app_id"] == .string("esb-tests"))
        #expect(message.headers["s"] == .string("text"))
        #expect(message.headers["i"] == .int(-42))
        #expect(message.headers["d"] == .double(2.5))
        #expect(message.headers["b"] == .bool(true))
        #expect(message.headers["t"] == .object(["inner": .string("x"), "n": .int(1)]))
        #expect(message.headers["a"] == .array([.int(1), .string("two"), .array([.bool(false)])]))
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue, exchange: queue)
    }

    @Test func unroutableMandatoryMessageIsReturnedWithCodeAndText() async throws {
        let exchange = AMQPPeer.uniqueName("unroutable")
        try await AMQPPeer.declare(exchange, exchange: exchange)
        let pool = Self.pool("unroutable")
        let error = await #expect(throws: AMQPError.self) {
            try await pool.send(OutgoingMessage(exchange: exchange, routingKey: "nobody.listens", body: Data("x".utf8)))
        }
        #expect(error?.code == .returned)
        #expect(error?.message.contains("312 NO_ROUTE") == true)
        // Routable sends on the same connections still succeed.
        try await pool.send(OutgoingMessage(exchange: exchange, routingKey: exchange, body: Data("y".utf8)))
        #expect(try await AMQPPeer.count(exchange) == 1)
        _ = await pool.shutdown()
        await AMQPPeer.delete(exchange, exchange: exchange)
    }

    @Test func missingExchangeClosesOnlyTheChannelAndTheNextSendSucceeds() async throws {
        let queue = AMQPPeer.uniqueName("chclose")
        try await AMQPPeer.declare(queue)
        let pool = Self.pool("chclose", size: 1)
        let error = await #expect(throws: AMQPError.self) {
            try await pool.send(OutgoingMessage(exchange: "no.such.exchange.\(queue)", routingKey: "k", body: Data("x".utf8)))
        }
        #expect(error?.code == .channelClosed)
        #expect(error?.message.contains("404") == true)
        try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("after".utf8)))
        #expect(try await AMQPPeer.get(queue).map(\.body) == ["after"])
        #expect(pool.connections.first?.reconnects == 0)
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    @Test func manyConcurrentSendsAreEachConfirmedAndAllArrive() async throws {
        let queue = AMQPPeer.uniqueName("window")
        try await AMQPPeer.declare(queue)
        let pool = Self.pool("window", size: 4)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<2000 {
                group.addTask {
                    try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data(String(index).utf8),
                                                        properties: BasicProperties(deliveryMode: 2)))
                }
            }
            try await group.waitForAll()
        }
        let bodies = Set(try await AMQPPeer.get(queue).map(\.body))
        #expect(bodies == Set((0..<2000).map(String.init)))
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    /// Issue 20: the sends waiting when a connection's owner wakes are encoded into one
    /// buffer and written with one `send(2)`. A stalled proxy holds the pool's one connection
    /// in its handshake while the 300 sends arrive, so they all wait in the pool; once it
    /// flows, the connection takes them together.
    @Test func sendsWaitingForTheConnectionGoOutInOneWrite() async throws {
        let queue = AMQPPeer.uniqueName("batch")
        try await AMQPPeer.declare(queue)
        let proxy = try await AMQPReliabilityTests.StallProxy()
        defer { proxy.stop() }
        try await proxy.stall()
        let pool = Self.pool("batch", size: 1, port: proxy.port, acquireMilliseconds: 30_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<300 {
                group.addTask {
                    try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data(String(index).utf8),
                                                        properties: BasicProperties(deliveryMode: 2, headers: ["n": .int(Int64(index))])))
                }
            }
            try await Task.sleep(for: .milliseconds(200))  // every send is parked: none can be written
            #expect(pool.socketWrites == 0)
            proxy.resume()
            try await group.waitForAll()
        }
        #expect(pool.socketWrites == 1, "300 publishes in \(pool.socketWrites) writes")
        let messages = try await AMQPPeer.get(queue)
        #expect(Set(messages.map(\.body)) == Set((0..<300).map(String.init)))
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    /// Issue 20: a service thread whose send finds the connection's owner asleep writes it
    /// to the socket itself; the owner reads and settles its confirm.
    @Test func aServiceThreadWritesItsOwnSendWhileTheOwnerSleeps() async throws {
        let queue = AMQPPeer.uniqueName("direct")
        try await AMQPPeer.declare(queue)
        let pool = Self.pool("direct", size: 1)
        for _ in 0..<100 where pool.connections.first?.status != .connected { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .milliseconds(100))  // the owner goes to sleep in poll
        let executor = ServiceExecutor(threads: 1)
        try await withTaskExecutorPreference(executor) {
            for index in 0..<20 {
                try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data(String(index).utf8),
                                                    properties: BasicProperties(deliveryMode: 2)))
            }
        }
        #expect(pool.sendsWrittenDirectly > 0)
        let before = pool.sendsWrittenDirectly
        try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("from the cooperative pool".utf8)))
        #expect(pool.sendsWrittenDirectly == before, "only service threads may block on the socket")
        #expect(try await AMQPPeer.get(queue).map(\.body) == (0..<20).map(String.init) + ["from the cooperative pool"])
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    @Test func withoutConfirmsASendReportsWrittenToTheSocket() async throws {
        let queue = AMQPPeer.uniqueName("noconfirm")
        try await AMQPPeer.declare(queue)
        let pool = Self.pool("noconfirm", confirm: false)
        for index in 0..<10 { try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data(String(index).utf8))) }
        _ = await pool.shutdown()  // a clean close flushes what was written
        #expect(try await AMQPPeer.count(queue) == 10)
        await AMQPPeer.delete(queue)
    }

    @Test func unreachableBrokerFailsWithPoolTimeoutNamingTheCause() async throws {
        let pool = Self.pool("nobroker", size: 1, port: TestEnvironment.freePort(), acquireMilliseconds: 700)
        let error = await #expect(throws: AMQPError.self) {
            try await pool.send(OutgoingMessage(exchange: "", routingKey: "q", body: Data()))
        }
        #expect(error?.code == .poolTimeout)
        #expect(error?.message.contains("nobroker") == true)
        #expect(error?.message.contains("cannot connect") == true)
        #expect(pool.connections.first?.status == .backingOff || pool.connections.first?.status == .connecting)
        _ = await pool.shutdown()
    }

    /// Two quick edits: the first pool's waiting sends are handed to a successor that is
    /// already shut down. They fail with `closed` (their caller then tries the current pool)
    /// instead of waiting where no timer looks.
    @Test func sendsHandedToAPoolAlreadyShutDownFailWithClosed() async throws {
        let port = TestEnvironment.freePort()
        let first = Self.pool("handoff-a", size: 1, port: port, acquireMilliseconds: 60_000)
        let second = Self.pool("handoff-b", size: 1, port: port, acquireMilliseconds: 60_000)
        let waiting = Task { try await first.send(OutgoingMessage(exchange: "", routingKey: "q", body: Data())) }
        try await Task.sleep(for: .milliseconds(300))
        _ = await second.shutdown()
        second.adopt(await first.shutdown())
        let outcome = try await withDeadline(.seconds(30)) { await waiting.result }
        #expect((outcome.failure as? AMQPError)?.code == .closed)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { error } else { nil } }
}

/// Nacks and TLS need a broker set up for them: a queue that rejects what overflows it, and
/// a TLS-terminating proxy with a self-signed certificate in front of the plain broker.
@Suite struct AMQPBrokerFeatureTests {
    @Test func overflowingAQueueThatRejectsPublishesIsANack() async throws {
        let queue = AMQPPeer.uniqueName("nack")
        try await AMQPPeer.declare(queue, maxLength: 1)
        let pool = AMQPPoolTests.pool("nacks", size: 1)
        try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("fits".utf8)))
        let error = await #expect(throws: AMQPError.self) {
            try await pool.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("overflows".utf8)))
        }
        #expect(error?.code == .nacked)
        #expect(error?.message.contains("nacks") == true)
        #expect(try await AMQPPeer.get(queue).map(\.body) == ["fits"])
        _ = await pool.shutdown()
        await AMQPPeer.delete(queue)
    }

    /// A self-signed certificate for `localhost`: (certificate, key) paths.
    static func certificate() async throws -> (certificate: String, key: String) {
        let directory = TestEnvironment.temporaryDirectory("tls")
        let result = try await runCommand("/usr/bin/env", [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost", "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem"])
        guard result.status == 0 else { throw AMQPPeer.PeerError(message: "openssl: \(result.stderr)") }
        return (directory + "/cert.pem", directory + "/key.pem")
    }

    func tlsPool(port: Int, caPath: String?, verify: Bool) -> Pool {
        var broker = BrokerConfiguration(host: "localhost")
        broker.port = port
        broker.tls = true
        broker.tlsCAPath = caPath
        broker.tlsVerify = verify
        broker.connectTimeoutMilliseconds = 2000
        var configuration = PoolConfiguration(name: "tls", broker: broker, returnTagHeader: "x-esb-msg-id")
        configuration.size = 1
        configuration.acquireTimeoutMilliseconds = 3000
        return Pool(configuration)
    }

    @Test func tlsConnectsWithTheGivenCAAndRefusesAnUntrustedCertificate() async throws {
        let queue = AMQPPeer.uniqueName("tls")
        try await AMQPPeer.declare(queue)
        let tls = try await Self.certificate()
        let proxy = try await AMQPReliabilityTests.StallProxy(tls: tls)
        defer { proxy.stop() }

        let trusted = tlsPool(port: proxy.port, caPath: tls.certificate, verify: true)
        try await trusted.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("over tls".utf8)))
        _ = await trusted.shutdown()

        let untrusted = tlsPool(port: proxy.port, caPath: nil, verify: true)
        let error = await #expect(throws: AMQPError.self) {
            try await untrusted.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("never".utf8)))
        }
        #expect(error?.code == .poolTimeout)
        #expect(untrusted.connections.first?.lastError?.contains("cannot connect") == true)
        _ = await untrusted.shutdown()

        let unverified = tlsPool(port: proxy.port, caPath: nil, verify: false)
        try await unverified.send(OutgoingMessage(exchange: "", routingKey: queue, body: Data("unverified".utf8)))
        _ = await unverified.shutdown()
        #expect(try await AMQPPeer.get(queue).map(\.body) == ["over tls", "unverified"])
        await AMQPPeer.delete(queue)
    }
}
