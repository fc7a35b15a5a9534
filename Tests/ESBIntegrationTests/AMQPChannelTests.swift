import Foundation
import Testing

/// AMQP channels in a real esbd on the real broker: a dropped service consumes a queue;
/// what it saw is written by the service to a file, what is left is read with pika.
@Suite struct AMQPChannelTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// A consuming service: records each call as a JSON line in `record`, then acts on the
    /// body (quotes ignored, for JSON channels): `fail` and `fail:…` always throw, `fail-once`
    /// throws on the first attempt, `sleep:N` and `sleep:N:…` sleep N ms, `hold:PATH` waits
    /// (up to 120 s) until the file PATH exists, `invoke-missing`
    /// invokes a service that is not deployed (and lets its error out).
    static func recorder(name: String, record: String) -> String {
        """
        import ESBService
        import Foundation
        import Glibc

        struct Recorder: Service {
            static let name = "\(name)"
            struct Failed: Error, CustomStringConvertible { var description: String }
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let text = request.text
                let command = text.trimmingCharacters(in: CharacterSet(charactersIn: "\\""))
                let delivery = request.amqp
                var headers: [String: String] = [:]
                for (key, value) in delivery?.headers ?? [:] { headers[key] = "\\(value)" }
                let line: [String: Any] = [
                    "body": text, "channel": request.channel, "cid": request.cid, "string_headers": request.headers,
                    "attempt": delivery?.attempt ?? 0, "redelivered": delivery?.redelivered ?? false,
                    "routing_key": delivery?.routingKey ?? "", "exchange": delivery?.exchange ?? "",
                    "delivery_mode": delivery?.properties.deliveryMode ?? 0, "headers": headers,
                ]
                var data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                data.append(10)
                let fd = open("\(record)", O_WRONLY | O_APPEND | O_CREAT, 0o644)
                _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
                if command.hasPrefix("sleep:"), let ms = Int(command.dropFirst(6).prefix { $0 != ":" }) { try await Task.sleep(for: .milliseconds(ms)) }
                if command.hasPrefix("hold:") {
                    let path = String(command.dropFirst(5))
                    for _ in 0..<1200 where !FileManager.default.fileExists(atPath: path) { try await Task.sleep(for: .milliseconds(100)) }
                }
                if command == "invoke-missing" { _ = try await context.invoke("no.such.service", payload: "") }
                if command == "fail" || command.hasPrefix("fail:") || (command == "fail-once" && delivery?.attempt == 1) {
                    throw Failed(description: "refused \\(text) on attempt \\(delivery?.attempt ?? 0)")
                }
                return .text("done")
            }
        }
        """
    }

    /// What the recorder service saw, one entry per call.
    static func records(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func waitFor(_ what: String, timeout: Double = 60, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("timed out waiting for \(what)")
    }

    /// A server with definition `broker`, the recorder deployed as `service`, and channel `name`.
    func server(channel: [String: Any], service: String, record: String, deploy: Bool = true,
                main: String = "") async throws -> TestServer {
        let server = try TestServer(main: main)
        try await server.start()
        let definition = try await server.request("POST", "/esb/api/definitions/amqp", body: json([
            "name": "broker", "host": AMQPPeer.host, "port": AMQPPeer.port, "username": "guest", "password": "guest",
            "connect_timeout_ms": 2000, "heartbeat": 5,
        ]), credentials: server.admin)
        #expect(definition.status == 201, "\(definition.text)")
        if deploy {
            try server.drop("\(service).swift", Self.recorder(name: service, record: record))
            try await server.waitForDeployment("\(service).swift")
        }
        let created = try await server.request("POST", "/esb/api/channels/amqp", body: json(
            ["def": "broker", "service": service].merging(channel) { $1 }), credentials: server.admin)
        #expect(created.status == 201, "\(created.text)")
        return server
    }

    func component(_ server: TestServer, _ channel: String) async throws -> [String: Any]? {
        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        return (health.json?["components"] as? [String: Any])?["amqp_channel.\(channel)"] as? [String: Any]
    }

    func waitConsuming(_ server: TestServer, _ channel: String, timeout: Double = 60) async throws {
        try await Self.waitFor("channel \(channel) consuming", timeout: timeout) {
            try await component(server, channel)?["status"] as? String == "ok"
        }
    }

    @Test func deliveryReachesTheServiceAndIsAckedOnlyAfterItReturned() async throws {
        let queue = AMQPPeer.uniqueName("ch.in"), dead = queue + ".dlq"
        try await AMQPPeer.declare(queue, deadLetter: dead)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "orders", "queue": queue, "consumers": 2, "prefetch": 5],
                                      service: "orders.consume", record: record)
        defer { Task { await server.stop() } }
        try await waitConsuming(server, "orders")

        try await AMQPPeer.publish(queue, "hello", headers: ["x-esb-cid": "cid.from-sender_1", "source": "test"])
        try await Self.waitFor("the call") { !Self.records(record).isEmpty }
        let call = try #require(Self.records(record).first)
        #expect(call["body"] as? String == "hello")
        #expect(call["channel"] as? String == "amqp")
        #expect(call["cid"] as? String == "cid.from-sender_1", "the sender's cid follows the message")
        #expect(call["attempt"] as? Int == 1)
        #expect(call["redelivered"] as? Bool == false)
        #expect(call["routing_key"] as? String == queue)
        #expect(call["exchange"] as? String == "")
        #expect(call["delivery_mode"] as? Int == 2)
        #expect((call["string_headers"] as? [String: String])?["source"] == "test")
        try await Self.waitFor("the ack") {
            let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
            return ready == 0 && unacked == 0
        }

        // In flight while the service runs: unacked, not before.
        let release = TestEnvironment.temporaryDirectory("amqp-ch") + "/release"
        try await AMQPPeer.publish(queue, "hold:" + release)
        try await Self.waitFor("the slow call") { Self.records(record).count == 2 }
        #expect(try await AMQPPeer.unacked(queue) == 1, "not acked while the service runs")
        let inFlight = try await component(server, "orders")
        let consumers = (inFlight?["channel"] as? [String: Any])?["consumers"] as? [[String: Any]] ?? []
        #expect(consumers.count == 2)
        #expect(consumers.reduce(0) { $0 + ($1["in_flight"] as? Int ?? 0) } == 1, "\(String(describing: inFlight))")
        _ = FileManager.default.createFile(atPath: release, contents: Data())
        try await Self.waitFor("the slow ack") { try await AMQPPeer.unacked(queue) == 0 }
        #expect(try await AMQPPeer.count(dead) == 0)

        // A cid follows a message from `send` (here the admin test publish) to the consumer.
        let outconn = try await server.request("POST", "/esb/api/outgoing/amqp", body: json(["name": "out", "def": "broker", "pool_size": 1]),
                                               credentials: server.admin)
        #expect(outconn.status == 201)
        var published: TestServer.Reply?
        try await Self.waitFor("a publish through the outconn") {
            published = try await server.request("POST", "/esb/api/outgoing/amqp/out/publish", body: json(
                ["payload": "sent", "routing_key": queue, "headers": ["n": 3]]), credentials: server.admin)
            return published?.status == 200
        }
        let sentCID = try #require(published?.json?["cid"] as? String)
        try await Self.waitFor("the sent message") { Self.records(record).count == 3 }
        let sent = try #require(Self.records(record).last)
        #expect(sent["cid"] as? String == sentCID, "\(sent)")
        #expect((sent["headers"] as? [String: String])?["n"] == "int(3)", "typed headers reach request.amqp.headers")
        #expect((sent["string_headers"] as? [String: String])?["n"] == nil, "request.headers holds only string ones")
        try await Self.waitFor("the third ack") { try await AMQPPeer.unacked(queue) == 0 }

        let metrics = try await server.request("GET", "/metrics").text
        #expect(metrics.contains(#"esb_amqp_channel_consumed_total{channel="orders"} 3"#), "\(metrics)")
        #expect(metrics.contains(#"esb_amqp_channel_acked_total{channel="orders"} 3"#))
        #expect(metrics.contains(#"esb_amqp_channel_consuming{channel="orders"} 2"#))
        await AMQPPeer.delete(queue)
        await AMQPPeer.delete(dead)
    }

    @Test func failingCallsAreRetriedThenRejectedToTheDeadLetterQueueAndBadBodiesAtOnce() async throws {
        let queue = AMQPPeer.uniqueName("ch.fail"), dead = queue + ".dlq"
        try await AMQPPeer.declare(queue, deadLetter: dead)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "jsonin", "queue": queue, "max_attempts": 3, "retry_delay_ms": 200,
                                                "data_format": "json"],
                                      service: "json.consume", record: record)
        defer { Task { await server.stop() } }
        try await waitConsuming(server, "jsonin")

        try await AMQPPeer.publish(queue, "{not json", headers: ["x-esb-cid": "bad-json-1"])
        try await Self.waitFor("the bad body dead-lettered") { try await AMQPPeer.count(dead) == 1 }
        #expect(Self.records(record).isEmpty, "a body that is not JSON never reaches the service")
        #expect(server.log.contains("AMQP delivery rejected") && server.log.contains("bad-json-1"), "\(server.log)")

        try await AMQPPeer.publish(queue, "\"fail\"", headers: ["x-esb-cid": "always-fails-7", "marker": "m-7"])
        try await Self.waitFor("the failing body dead-lettered") { try await AMQPPeer.count(dead) == 2 }
        let calls = Self.records(record).filter { $0["body"] as? String == "\"fail\"" }
        #expect(calls.map { $0["attempt"] as? Int ?? 0 } == [1, 2, 3], "max_attempts calls, then rejected")
        let rejection = server.log.split(separator: "\n").last { $0.contains("AMQP delivery rejected") && $0.contains("always-fails-7") }
        let line = try #require(rejection.map(String.init), "\(server.log)")
        #expect(line.contains("m-7"), "the headers are logged")
        #expect(line.contains("\\\"fail\\\"") || line.contains("\"fail\""), "the body is logged")
        #expect(line.contains("refused"), "the last error is logged")

        // Headers nested deeper than any client writes: rejected at once, never walked.
        try await AMQPPeer.publish(queue, "{}", headers: ["x-esb-cid": "too-deep-1"], deepHeader: 300)
        try await Self.waitFor("the deep message dead-lettered") { try await AMQPPeer.count(dead) == 3 }
        #expect(!Self.records(record).contains { $0["body"] as? String == "{}" })
        #expect(server.log.contains("too-deep-1") && server.log.contains("deeper than 32 levels"))

        // The service's own failure to invoke another is its failure: retried, then
        // dead-lettered (never requeued as if the channel's service were missing).
        try await AMQPPeer.publish(queue, "\"invoke-missing\"")
        try await Self.waitFor("the invoking body dead-lettered") { try await AMQPPeer.count(dead) == 4 }
        #expect(Self.records(record).filter { $0["body"] as? String == "\"invoke-missing\"" }.count == 3)

        try await AMQPPeer.publish(queue, "\"fail-once\"")
        try await Self.waitFor("the retried call acked") {
            let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
            return Self.records(record).filter { $0["body"] as? String == "\"fail-once\"" }.count == 2 && ready == 0 && unacked == 0
        }
        #expect(try await AMQPPeer.count(dead) == 4, "a call that succeeds on its retry is acked, not dead-lettered")
        let metrics = try await server.request("GET", "/metrics").text
        #expect(metrics.contains(#"esb_amqp_channel_rejected_total{channel="jsonin"} 4"#), "\(metrics)")
        #expect(metrics.contains(#"esb_amqp_channel_failed_total{channel="jsonin"} 7"#))
        await AMQPPeer.delete(queue)
        await AMQPPeer.delete(dead)
    }

    @Test func missingQueueOrServiceIsAcceptedReportedAndRetriedAndABrokerCancelTooAfterwards() async throws {
        let queue = AMQPPeer.uniqueName("ch.late")
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "late", "queue": queue], service: "late.consume", record: record,
                                      deploy: false)
        defer { Task { await server.stop() } }
        try await Self.waitFor("the missing service reported") {
            let detail = try await component(server, "late")
            return detail?["status"] as? String == "degraded" && (detail?["detail"] as? String ?? "").contains("late.consume")
        }
        try server.drop("late.consume.swift", Self.recorder(name: "late.consume", record: record))
        try await server.waitForDeployment("late.consume.swift")
        try await Self.waitFor("the missing queue reported", timeout: 90) {
            (try await component(server, "late")?["detail"] as? String ?? "").contains("404")
        }
        try await AMQPPeer.declare(queue)
        try await waitConsuming(server, "late", timeout: 90)
        try await AMQPPeer.publish(queue, "after all")
        try await Self.waitFor("the call") { Self.records(record).count == 1 }

        // The queue deleted under the consumer: the broker cancels it; reported, then retried.
        await AMQPPeer.delete(queue)
        try await Self.waitFor("the cancel reported") {
            (try await component(server, "late")?["detail"] as? String ?? "").contains("cancelled")
        }
        try await AMQPPeer.declare(queue)
        try await waitConsuming(server, "late", timeout: 90)
        #expect(!server.log.contains("Fatal error"))
        await AMQPPeer.delete(queue)
    }

    @Test func anEditRestartsOnlyThatChannelAfterItsInFlightDeliveryIsAcked() async throws {
        let queue = AMQPPeer.uniqueName("ch.edit"), other = AMQPPeer.uniqueName("ch.other")
        try await AMQPPeer.declare(queue)
        try await AMQPPeer.declare(other)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "edited", "queue": queue], service: "edit.consume", record: record)
        defer { Task { await server.stop() } }
        let second = try await server.request("POST", "/esb/api/channels/amqp", body: json(
            ["name": "untouched", "def": "broker", "queue": other, "service": "edit.consume"]), credentials: server.admin)
        #expect(second.status == 201)
        try await waitConsuming(server, "edited")
        try await waitConsuming(server, "untouched")

        try await AMQPPeer.publish(queue, "sleep:2000")
        try await Self.waitFor("the slow call") { Self.records(record).count == 1 }
        let edited = try await server.request("PUT", "/esb/api/channels/amqp/edited", body: json(["prefetch": 3]), credentials: server.admin)
        #expect(edited.status == 200)
        try await Self.waitFor("the restart") {
            let status = try await component(server, "edited")?["status"] as? String
            let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
            return status == "ok" && ready == 0 && unacked == 0
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(Self.records(record).count == 1, "the in-flight delivery finished and was acked, not redelivered")
        func starts(_ channel: String) -> Int {
            server.log.split(separator: "\n").filter { $0.contains("AMQP channel ready") && $0.contains("amqp.channel=\(channel) ") }.count
        }
        #expect(starts("edited") == 2)
        #expect(starts("untouched") == 1, "no other channel restarts")

        let off = try await server.request("PUT", "/esb/api/channels/amqp/edited", body: json(["is_active": false]), credentials: server.admin)
        #expect(off.status == 200)
        try await Self.waitFor("inactive") { try await component(server, "edited")?["detail"] as? String == "inactive" }
        try await AMQPPeer.publish(queue, "while inactive")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await AMQPPeer.count(queue) == 1, "an inactive channel consumes nothing")
        await AMQPPeer.delete(queue)
        await AMQPPeer.delete(other)
    }

    @Test func sigtermFinishesInFlightDeliveriesWithinTheGraceAndLeavesTheRestUnacked() async throws {
        let quick = AMQPPeer.uniqueName("ch.term"), stuck = AMQPPeer.uniqueName("ch.stuck")
        try await AMQPPeer.declare(quick)
        try await AMQPPeer.declare(stuck)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        // graceful_shutdown_seconds = 5 (TestServer).
        let server = try await server(channel: ["name": "quick", "queue": quick], service: "term.consume", record: record)
        defer { Task { await server.stop() } }
        let second = try await server.request("POST", "/esb/api/channels/amqp", body: json(
            ["name": "stuck", "def": "broker", "queue": stuck, "service": "term.consume"]), credentials: server.admin)
        #expect(second.status == 201)
        try await waitConsuming(server, "quick")
        try await waitConsuming(server, "stuck")
        try await AMQPPeer.publish(quick, "sleep:1500")
        try await AMQPPeer.publish(stuck, "sleep:60000")
        try await Self.waitFor("both calls") { Self.records(record).count == 2 }
        server.signal(SIGTERM)
        // Consumers cancel at SIGTERM: a message arriving during the drain is not taken
        // (the stuck delivery holds esbd for the whole 5 s grace).
        try await Task.sleep(for: .milliseconds(500))
        try await AMQPPeer.publish(quick, "sleep:100:after-sigterm")
        let status = await server.waitForExit(timeout: 30)
        #expect(status == 0, "\(server.log)")
        #expect(!Self.records(record).contains { $0["body"] as? String == "sleep:100:after-sigterm" }, "no delivery after the cancel")
        let left = try await AMQPPeer.get(quick).map(\.body)
        #expect(left == ["sleep:100:after-sigterm"], "the in-flight one finished within the grace and was acked; the late one waits")
        #expect(try await AMQPPeer.count(stuck) == 1, "not finished: left unacked, back in the queue")
        await AMQPPeer.delete(quick)
        await AMQPPeer.delete(stuck)
    }

    @Test func objectsThroughAPICLIEnmasseAndDashboard() async throws {
        let queue = AMQPPeer.uniqueName("ch.obj")
        try await AMQPPeer.declare(queue)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "objs", "queue": queue], service: "obj.consume", record: record,
                                      deploy: false)
        defer { Task { await server.stop() } }
        let channel = try await server.request("GET", "/esb/api/channels/amqp/objs", credentials: server.admin)
        #expect(channel.json?["consumers"] as? Int == 1)
        #expect(channel.json?["prefetch"] as? Int == 10)
        #expect(channel.json?["max_attempts"] as? Int == 3)
        #expect(channel.json?["retry_delay_ms"] as? Int == 1000)
        #expect(channel.json?["data_format"] as? String == "text")
        #expect(channel.json?["is_active"] as? Bool == true)

        let missingDef = try await server.request("POST", "/esb/api/channels/amqp", body: json(
            ["name": "x", "def": "nope", "queue": "q", "service": "s"]), credentials: server.admin)
        #expect(missingDef.status == 422)
        #expect(missingDef.text.contains("nope"))
        for (field, value) in [("prefetch", 0), ("max_attempts", 0), ("consumers", 65)] as [(String, Int)] {
            let bad = try await server.request("PUT", "/esb/api/channels/amqp/objs", body: json([field: value]), credentials: server.admin)
            #expect(bad.status == 422)
            #expect((bad.json?["error"] as? [String: Any])?["field"] as? String == field)
        }
        let badFormat = try await server.request("PUT", "/esb/api/channels/amqp/objs", body: json(["data_format": "yaml"]),
                                                 credentials: server.admin)
        #expect(badFormat.status == 422)
        let inUse = try await server.request("DELETE", "/esb/api/definitions/amqp/broker", credentials: server.admin)
        #expect(inUse.status == 409)
        #expect(inUse.text.contains("'objs'"), "\(inUse.text)")

        // CLI: `esb channels amqp …`, with `esb channels …` still the HTTP channels.
        let created = try await server.esb(["channels", "amqp", "create", "cli", "def=broker", "queue=\(queue)", "service=obj.consume",
                                            "prefetch=7"])
        #expect(created.status == 0, "\(created.stderr)")
        let listed = try await server.esb(["channels", "amqp", "list"])
        #expect(listed.stdout.contains("\"cli\"") && listed.stdout.contains("\"objs\""), "\(listed.stdout)")
        let edited = try await server.esb(["channels", "amqp", "edit", "cli", "prefetch=8"])
        #expect(edited.status == 0)
        #expect(try await server.esb(["channels", "amqp", "get", "cli"]).stdout.contains("8"))
        #expect(try await server.esb(["channels", "amqp", "delete", "cli"]).status == 0)
        let http = try await server.esb(["channels", "list"])
        #expect(http.status == 0 && !http.stdout.contains("objs"), "plain `channels` lists HTTP channels")

        // enmasse: exported under channel_amqp, after the definition it names.
        let export = try await server.request("GET", "/esb/api/enmasse/export", credentials: server.admin).text
        #expect(export.contains("channel_amqp:"), "\(export)")
        let definitionAt = try #require(export.range(of: "def_amqp:")), channelAt = try #require(export.range(of: "channel_amqp:"))
        #expect(definitionAt.lowerBound < channelAt.lowerBound)

        // The dashboard page shows each consumer and why it does not consume.
        let page = try await server.dashboardPage("/esb/dashboard/objects/channel_amqp/objs")
        #expect(page.contains("id=\"consumers\""), "\(page)")
        for column in ["in flight", "handled", "failed", "rejected"] { #expect(page.contains("<th>\(column)</th>") || page.contains(column)) }
        let status = try #require(page.range(of: "id=\"consumer-status\"").map { String(page[$0.lowerBound...].prefix(400)) })
        #expect(status.contains("no service named") && status.contains("obj.consume"), "why it does not consume: \(status)")
        await AMQPPeer.delete(queue)
    }

    @Test func eachConsumerHasAtMostPrefetchDeliveriesInFlightAndCallsTheServiceForAllOfThemAtOnce() async throws {
        let queue = AMQPPeer.uniqueName("ch.qos")
        try await AMQPPeer.declare(queue)
        let record = TestEnvironment.temporaryDirectory("amqp-ch") + "/calls.jsonl"
        let server = try await server(channel: ["name": "qos", "queue": queue, "prefetch": 3], service: "qos.consume", record: record)
        defer { Task { await server.stop() } }
        try await waitConsuming(server, "qos")
        // Calls long enough that a loaded machine checks within them (rabbitmqctl takes seconds).
        try await AMQPPeer.publish(queue, "sleep:20000:", count: 10, numbered: true)
        try await Self.waitFor("three concurrent calls") { Self.records(record).count == 3 }
        try await Task.sleep(for: .milliseconds(700))
        let ready = try await AMQPPeer.count(queue), unacked = try await AMQPPeer.unacked(queue)
        #expect(Self.records(record).count == 3, "no fourth call while three are in flight (basic.qos prefetch 3)")
        #expect(unacked == 3 && ready == 7, "unacked \(unacked), ready \(ready)")
        await AMQPPeer.delete(queue)
    }
}
