import ESBStore
import Foundation
import Testing

/// Outgoing AMQP connections in a real esbd: objects through the admin API and the CLI,
/// `send` from a dropped service, live edits, health and metrics; arrivals read with pika.
@Suite struct AMQPOutconnTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// A server with definition `broker` (guest on the test broker, or `port`) and outconn `out`.
    func serverWithOutconn(_ outconn: [String: Any] = [:], port: Int = AMQPPeer.port) async throws -> TestServer {
        let server = try TestServer()
        try await server.start()
        let definition = try await server.request("POST", "/esb/api/definitions/amqp", body: json([
            "name": "broker", "host": AMQPPeer.host, "port": port, "username": "guest", "password": "guest",
            "connect_timeout_ms": 1000,
        ]), credentials: server.admin)
        #expect(definition.status == 201, "\(definition.text)")
        let created = try await server.request("POST", "/esb/api/outgoing/amqp", body: json(
            ["name": "out", "def": "broker", "pool_size": 2].merging(outconn) { $1 }), credentials: server.admin)
        #expect(created.status == 201, "\(created.text)")
        return server
    }

    func publish(_ server: TestServer, _ body: [String: Any], outconn: String = "out") async throws -> TestServer.Reply {
        try await server.request("POST", "/esb/api/outgoing/amqp/\(outconn)/publish", body: json(body), credentials: server.admin)
    }

    /// Waits until the outconn's pool reports a connection up.
    func waitConnected(_ server: TestServer, outconn: String = "out") async throws {
        for _ in 0..<100 {
            let health = try await server.request("GET", "/esb/health", credentials: server.admin)
            let component = (health.json?["components"] as? [String: Any])?["amqp.\(outconn)"] as? [String: Any]
            if component?["status"] as? String == "ok" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("outconn \(outconn) never connected")
    }

    @Test func objectsAreValidatedPasswordsNeverReturnedAndDefinitionsInUseRefused() async throws {
        let server = try await serverWithOutconn()
        defer { Task { await server.stop() } }
        let definition = try await server.request("GET", "/esb/api/definitions/amqp/broker", credentials: server.admin)
        #expect(definition.json?["port"] as? Int == AMQPPeer.port)
        #expect(definition.json?["vhost"] as? String == "/")
        #expect(definition.json?["heartbeat"] as? Int == 30)
        #expect(definition.json?["frame_max"] as? Int == 131_072)
        #expect(definition.json?["tls"] as? Bool == false)
        #expect(definition.json?["tls_verify"] as? Bool == true)
        #expect(definition.json?["password"] == nil)
        let list = try await server.request("GET", "/esb/api/definitions/amqp", credentials: server.admin)
        #expect(!list.text.contains("guest\",\"password") && !list.text.contains("\"password\""))

        let outconn = try await server.request("GET", "/esb/api/outgoing/amqp/out", credentials: server.admin)
        #expect(outconn.json?["delivery_mode"] as? Int == 2)
        #expect(outconn.json?["priority"] as? Int == 5)
        #expect(outconn.json?["confirm"] as? Bool == true)
        #expect(outconn.json?["mandatory"] as? Bool == true)
        #expect(outconn.json?["confirm_timeout_ms"] as? Int == 5000)
        #expect(outconn.json?["acquire_timeout_ms"] as? Int == 5000)
        #expect(outconn.json?["is_active"] as? Bool == true)

        for (field, value) in [("priority", 10), ("delivery_mode", 3), ("pool_size", 0)] as [(String, Int)] {
            let bad = try await server.request("PUT", "/esb/api/outgoing/amqp/out", body: json([field: value]), credentials: server.admin)
            #expect(bad.status == 422)
            #expect((bad.json?["error"] as? [String: Any])?["field"] as? String == field)
        }
        let badPort = try await server.request("PUT", "/esb/api/definitions/amqp/broker", body: json(["port": 70000]), credentials: server.admin)
        #expect(badPort.status == 422)
        let missingDef = try await server.request("POST", "/esb/api/outgoing/amqp", body: json(["name": "x", "def": "nope"]),
                                                  credentials: server.admin)
        #expect(missingDef.status == 422)
        #expect(missingDef.text.contains("nope"))

        let inUse = try await server.request("DELETE", "/esb/api/definitions/amqp/broker", credentials: server.admin)
        #expect(inUse.status == 409)
        #expect(inUse.text.contains("'out'"))

        let changed = try await server.request("POST", "/esb/api/definitions/amqp/broker/password",
                                               body: json(["password1": "s3cret-xyz", "password2": "s3cret-xyz"]), credentials: server.admin)
        #expect(changed.status == 204)
        let everything = [try await server.request("GET", "/esb/api/definitions/amqp", credentials: server.admin).text,
                          try await server.request("GET", "/metrics").text, try await server.request("GET", "/esb/health", credentials: server.admin).text,
                          server.log].joined()
        #expect(!everything.contains("s3cret-xyz"))
        // Stored sealed, not in clear, in the ODB file.
        let odb = try Data(contentsOf: URL(fileURLWithPath: server.directory + "/esb.db"))
        #expect(odb.range(of: Data("s3cret-xyz".utf8)) == nil)
    }

    @Test func publishAppliesOutconnDefaultsAddsTheCidAndLiveEditsTakeEffect() async throws {
        let queue = AMQPPeer.uniqueName("api")
        try await AMQPPeer.declare(queue, maxPriority: 9)
        let server = try await serverWithOutconn(["app_id": "orders-app", "content_type": "application/json"])
        defer { Task { await server.stop() } }
        let other = try await server.request("POST", "/esb/api/outgoing/amqp", body: json(["name": "other", "def": "broker", "pool_size": 1]),
                                             credentials: server.admin)
        #expect(other.status == 201)
        try await waitConnected(server)
        try await waitConnected(server, outconn: "other")
        func builds(_ outconn: String) -> Int {
            server.log.split(separator: "\n").filter { $0.contains("outgoing AMQP connection ready") && $0.contains("amqp.outconn=\(outconn) ") }.count
        }
        #expect(builds("out") == 1 && builds("other") == 1, "\(server.log)")

        let first = try await publish(server, ["payload": "one", "routing_key": queue, "headers": ["source": "api", "n": 3]])
        #expect(first.status == 200, "\(first.text)")
        #expect(first.json?["status"] as? String == "confirmed")
        let cid = first.json?["cid"] as? String

        let edited = try await server.request("PUT", "/esb/api/outgoing/amqp/out", body: json(["priority": 9]), credentials: server.admin)
        #expect(edited.status == 200)
        #expect(builds("out") == 2, "the edited outconn's pool is rebuilt")
        #expect(builds("other") == 1, "no other pool is")
        let second = try await publish(server, ["payload": ["k": "v"], "routing_key": queue, "properties": ["app_id": "override"]])
        #expect(second.status == 200, "\(second.text)")

        let messages = try await AMQPPeer.get(queue)
        #expect(messages.count == 2)
        let one = try #require(messages.first { $0.body == "one" })
        #expect(one.properties["priority"] == .int(5))
        #expect(one.properties["delivery_mode"] == .int(2))
        #expect(one.properties["app_id"] == .string("orders-app"))
        #expect(one.properties["content_type"] == .string("application/json"))
        #expect(one.properties["correlation_id"] == nil, "unset properties are not sent")
        #expect(one.headers["x-esb-cid"] == cid.map(JSONValue.string))
        #expect(one.headers["source"] == .string("api"))
        #expect(one.headers["n"] == .int(3))
        let two = try #require(messages.first { $0.body == #"{"k":"v"}"# })
        #expect(two.properties["priority"] == .int(9), "the edit is live")
        #expect(two.properties["app_id"] == .string("override"), "the call's value wins")
        await AMQPPeer.delete(queue)
    }

    @Test func serviceSendsWithCallOverridesAndGetsNamedErrors() async throws {
        let queue = AMQPPeer.uniqueName("svc")
        try await AMQPPeer.declare(queue, maxPriority: 9)
        let server = try await serverWithOutconn()
        defer { Task { await server.stop() } }
        let created = try await server.request("POST", "/esb/api/outgoing/amqp", body: json(["name": "off", "def": "broker", "is_active": false]),
                                               credentials: server.admin)
        #expect(created.status == 201)
        try server.drop("sender.swift", """
            import ESBService
            import Foundation
            struct Sender: Service {
                static let name = "amqp.sender"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    let target = request.query["outconn"] ?? "out"
                    let key = request.query["key"] ?? ""
                    do {
                        try await context.outgoing.amqp.send(
                            request.text, outconn: target, exchange: "", routingKey: key,
                            properties: AMQPProperties(priority: 1, correlationId: context.cid, messageId: "m-1",
                                                       timestamp: Date(timeIntervalSince1970: 1_700_000_000)),
                            headers: ["nested": ["list": [1, 2.5, "three", true]]])
                        return .text("sent")
                    } catch let error as ServiceError {
                        return .text(error.code.rawValue + "|" + error.message)
                    }
                }
            }
            """)
        try await server.waitForDeployment("sender.swift")
        try await waitConnected(server)
        let sent = try await server.request("POST", "/esb/api/invoke/amqp.sender?key=\(queue)", body: Data("hello".utf8), credentials: server.admin)
        #expect(sent.text == "sent")
        let message = try #require(try await AMQPPeer.get(queue).first)
        #expect(message.body == "hello")
        #expect(message.properties["priority"] == .int(1), "the call beats the outconn's default 5")
        #expect(message.properties["delivery_mode"] == .int(2))
        #expect(message.properties["message_id"] == .string("m-1"))
        #expect(message.properties["timestamp"] == .int(1_700_000_000))
        #expect(message.properties["correlation_id"] == message.headers["x-esb-cid"])
        #expect(message.headers["nested"] == .object(["list": .array([.int(1), .double(2.5), .string("three"), .bool(true)])]))

        func outcome(_ query: String) async throws -> String {
            try await server.request("POST", "/esb/api/invoke/amqp.sender?\(query)", body: Data("x".utf8), credentials: server.admin).text
        }
        let returned = try await outcome("key=nobody.\(queue)")
        #expect(returned.hasPrefix("amqp.returned|"))
        #expect(returned.contains("312 NO_ROUTE"))
        #expect(try await outcome("outconn=missing&key=\(queue)").hasPrefix("amqp.unknown_outconn|"))
        #expect(try await outcome("outconn=off&key=\(queue)").hasPrefix("amqp.inactive|"))

        let metrics = try await server.request("GET", "/metrics").text
        #expect(metrics.contains(#"esb_amqp_confirmed_total{outconn="out"}"#))
        #expect(metrics.contains(#"esb_amqp_returned_total{outconn="out"} 1"#))
        #expect(metrics.contains(#"esb_amqp_connected{outconn="out"} 2"#))
        await AMQPPeer.delete(queue)
    }

    @Test func brokerDownDelaysNothingAndIsReportedUntilAPoolTimeout() async throws {
        let deadPort = TestEnvironment.freePort()
        let server = try await serverWithOutconn(["acquire_timeout_ms": 500], port: deadPort)
        defer { Task { await server.stop() } }
        #expect(try await server.request("GET", "/esb/ping").status == 200)
        try await Task.sleep(for: .milliseconds(300))
        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        #expect(health.status == 200)
        #expect(health.json?["status"] as? String == "degraded")
        let component = try #require((health.json?["components"] as? [String: Any])?["amqp.out"] as? [String: Any])
        #expect(component["status"] as? String == "degraded")
        #expect((component["detail"] as? String)?.contains("cannot connect") == true)
        let pool = try #require(component["pool"] as? [String: Any])
        #expect(pool["connected"] as? Int == 0)
        #expect((pool["connections"] as? [Any])?.count == 2)
        let failed = try await publish(server, ["payload": "x", "routing_key": "q"])
        #expect(failed.status == 503)
        #expect((failed.json?["error"] as? [String: Any])?["code"] as? String == "amqp.pool_timeout")
        #expect(server.log.contains("outgoing AMQP connection state"))
    }

    @Test func cliManagesDefinitionsOutconnsAndPublishes() async throws {
        let queue = AMQPPeer.uniqueName("cli")
        try await AMQPPeer.declare(queue)
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        func esb(_ arguments: String...) async throws -> CommandResult { try await server.esb(arguments) }
        let def = try await esb("amqp", "def", "create", "cli-broker", "host=\(AMQPPeer.host)", "port=\(AMQPPeer.port)", "username=guest", "password=guest")
        #expect(def.status == 0, "\(def.stderr)")
        #expect(!def.stdout.contains("password"))
        let out = try await esb("amqp", "out", "create", "cli-out", "def=cli-broker", "pool_size=1")
        #expect(out.status == 0, "\(out.stderr)")
        #expect(try await esb("amqp", "out", "edit", "cli-out", "priority=7").stdout.contains("\"priority\" : 7"))
        #expect(try await esb("amqp", "out", "list").stdout.contains("cli-out"))
        var published = try await esb("amqp", "out", "publish", "cli-out", "--routing-key", queue, "--payload", "from-cli", "--header", "k=v")
        for _ in 0..<50 where published.status != 0 {
            try await Task.sleep(for: .milliseconds(100))  // the pool connects in the background
            published = try await esb("amqp", "out", "publish", "cli-out", "--routing-key", queue, "--payload", "from-cli", "--header", "k=v")
        }
        #expect(published.status == 0, "\(published.stderr)")
        #expect(published.stdout.contains("confirmed"))
        let inUse = try await esb("amqp", "def", "delete", "cli-broker")
        #expect(inUse.status != 0)
        #expect(inUse.stderr.contains("cli-out"))
        #expect(try await esb("amqp", "out", "delete", "cli-out").status == 0)
        #expect(try await esb("amqp", "def", "delete", "cli-broker").status == 0)
        let message = try #require(try await AMQPPeer.get(queue).first)
        #expect(message.body == "from-cli")
        #expect(message.headers["k"] == .string("v"))
        await AMQPPeer.delete(queue)
    }
}

extension AMQPOutconnTests {
    @Test func editsRebuildThePoolWhileSendsAreInFlightAndNoneFails() async throws {
        let queue = AMQPPeer.uniqueName("edit")
        try await AMQPPeer.declare(queue, maxPriority: 9)
        // What is asserted is that rebuilds fail no send, not how fast: on a loaded machine
        // 3,000 sends can wait longer than the default 5 s for a connection or a confirm.
        let server = try await serverWithOutconn(["confirm_timeout_ms": 60_000, "acquire_timeout_ms": 60_000])
        defer { Task { await server.stop() } }
        try server.drop("burst.swift", """
            import ESBService
            import Foundation
            struct Burst: Service {
                static let name = "amqp.burst"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    let failures = await withTaskGroup(of: String?.self) { group in
                        for index in 0..<3000 {
                            group.addTask {
                                do {
                                    try await context.outgoing.amqp.send(String(index), outconn: "out", exchange: "", routingKey: request.text)
                                    return nil
                                } catch { return "\\(error)" }
                            }
                        }
                        return await group.reduce(into: [String]()) { if let failure = $1 { $0.append(failure) } }
                    }
                    return .text(failures.isEmpty ? "ok" : failures.prefix(3).joined(separator: "; "))
                }
            }
            """)
        try await server.waitForDeployment("burst.swift")
        try await waitConnected(server)
        async let burst = server.request("POST", "/esb/api/invoke/amqp.burst", body: Data(queue.utf8), credentials: server.admin)
        for priority in [7, 8, 9] {
            try await Task.sleep(for: .milliseconds(100))
            let edited = try await server.request("PUT", "/esb/api/outgoing/amqp/out", body: json(["priority": priority]),
                                                  credentials: server.admin)
            #expect(edited.status == 200)
        }
        let burstText = try await burst.text
        #expect(burstText == "ok", "sends failed: \(burstText)")
        let rebuilds = server.log.split(separator: "\n").filter { $0.contains("outgoing AMQP connection ready") && $0.contains("amqp.outconn=out ") }
        #expect(rebuilds.count == 4, "three live rebuilds during the burst")
        let stored = try JSONDecoder().decode([String].self, from: Data(try await AMQPPeer.run(["bodies", queue]).utf8))
        #expect(Set(stored) == Set((0..<3000).map(String.init)))
        await AMQPPeer.delete(queue)
    }
}
