import ESBStore
import Foundation
import Synchronization
import Testing

/// Reliability scenarios not covered by a feature's own suite: R7 (SIGTERM
/// under load), R8 (SIGHUP under load), R9 (100 drops and a broken one), R14 (secrets).
/// Each prints one `RELIABILITY Rn …` line of figures that scripts/reliability collects.
@Suite struct ReliabilityTests {
    static func report(_ line: String) { print("RELIABILITY " + line) }

    @Test func r14PasswordsAppearNowhereButAnExportThatAsksForThem() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let secrets = ["R14-sec-\(UUID().uuidString.prefix(8))", "R14-amqp-\(UUID().uuidString.prefix(8))", "R14-http-\(UUID().uuidString.prefix(8))"]
        func create(_ path: String, _ object: [String: Any]) async throws {
            let reply = try await server.request("POST", "/esb/api/\(path)", body: try JSONSerialization.data(withJSONObject: object),
                                                 credentials: server.admin)
            #expect(reply.status == 201, "\(reply.text)")
            #expect(!secrets.contains { reply.text.contains($0) })
        }
        try await create("security/basic-auth", ["name": "r14-sec", "username": "u", "password": secrets[0]])
        try await create("definitions/amqp", ["name": "r14-broker", "host": AMQPPeer.host, "port": AMQPPeer.port, "username": "guest",
                                              "password": secrets[1]])
        try await create("outgoing/amqp", ["name": "r14-out", "def": "r14-broker", "pool_size": 1])
        try await create("security/basic-auth", ["name": "r14-http-sec", "username": "h", "password": secrets[2]])
        try await create("outgoing/http", ["name": "r14-http", "address": "http://127.0.0.1:9", "security": "r14-http-sec"])
        try await create("channels/http", ["name": "r14-ch", "url_path": "/r14", "service": "esb.helpers.echo", "security": "r14-sec"])
        // Use them: a wrong and a right password on the channel, a publish attempt.
        _ = try await server.request("POST", "/r14", body: Data("x".utf8), credentials: ("u", "wrong"))
        _ = try await server.request("POST", "/r14", body: Data("x".utf8), credentials: ("u", secrets[0]))
        _ = try await server.request("POST", "/esb/api/outgoing/amqp/r14-out/publish", body: Data(#"{"routing_key": "none"}"#.utf8),
                                     credentials: server.admin)

        var places: [String: String] = [:]
        for path in ["security/basic-auth", "definitions/amqp", "outgoing/amqp", "outgoing/http", "channels/http",
                     "security/basic-auth/r14-sec", "definitions/amqp/r14-broker"] {
            places["GET /esb/api/\(path)"] = try await server.request("GET", "/esb/api/\(path)", credentials: server.admin).text
        }
        places["GET /esb/health"] = try await server.request("GET", "/esb/health", credentials: server.admin).text
        places["GET /metrics"] = try await server.request("GET", "/metrics").text
        places["GET /esb/api/openapi.json"] = try await server.request("GET", "/esb/api/openapi.json", credentials: server.admin).text
        places["default export (yaml)"] = try await server.esb(["enmasse", "export"]).stdout
        places["default export (json)"] = try await server.esb(["enmasse", "export", "--format", "json"]).stdout
        places["esbd log"] = server.log
        places["ODB file"] = String(decoding: try Data(contentsOf: URL(fileURLWithPath: server.directory + "/esb.db")), as: UTF8.self)
        places["ODB WAL"] = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: server.directory + "/esb.db-wal"))) ?? Data(), as: UTF8.self)
        let leaks = places.filter { _, text in secrets.contains { text.contains($0) } }.map(\.key).sorted()
        #expect(leaks.isEmpty, "a password appears in: \(leaks)")

        let asked = try await server.esb(["enmasse", "export", "--include-secrets"]).stdout
        #expect(secrets.allSatisfy { asked.contains($0) }, "an export that asks carries every password")
        Self.report("R14 places=\(places.count) leaks=\(leaks.count) export_with_secrets=\(secrets.allSatisfy { asked.contains($0) })")
    }

    @Test func r7GracefulStopUnderHTTPAndAMQPLoadLosesNoConfirmedMessage() async throws {
        let queue = AMQPPeer.uniqueName("r7")
        try await AMQPPeer.declare(queue)
        defer { Task { await AMQPPeer.delete(queue) } }
        let server = try TestServer()
        try await server.start()
        for (path, object) in [("definitions/amqp", ["name": "r7-broker", "host": AMQPPeer.host, "port": AMQPPeer.port,
                                                     "username": "guest", "password": "guest"] as [String: Any]),
                               ("outgoing/amqp", ["name": "r7-out", "def": "r7-broker", "pool_size": 2])] {
            let reply = try await server.request("POST", "/esb/api/\(path)", body: try JSONSerialization.data(withJSONObject: object),
                                                 credentials: server.admin)
            #expect(reply.status == 201, "\(reply.text)")
        }
        try server.drop("r7.swift", """
            import ESBService
            struct Send: Service {
                static let name = "r7.send"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    try await context.outgoing.amqp.send(request.payload, outconn: "r7-out", exchange: "", routingKey: "\(queue)")
                    return .text("sent")
                }
            }
            """)
        try await server.waitForDeployment("r7.swift")
        let stopped = LoadFlag()
        let load = Task { () -> (confirmed: [String], failed: Int) in
            await withTaskGroup(of: ([String], Int).self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        var confirmed: [String] = [], failed = 0
                        // New requests stop at SIGTERM; those in flight then finish or fail.
                        for index in 0..<100_000 where !stopped.isSet {
                            let id = "\(worker)-\(index)"
                            guard let reply = try? await server.request("POST", "/esb/api/invoke/r7.send", body: Data(id.utf8),
                                                                        credentials: server.admin) else {
                                failed += 1
                                continue
                            }
                            if reply.status == 200 && reply.text == "sent" { confirmed.append(id) } else { failed += 1 }
                        }
                        return (confirmed, failed)
                    }
                }
                return await group.reduce(into: ([String](), 0)) { $0.0 += $1.0; $0.1 += $1.1 }
            }
        }
        try await Task.sleep(for: .seconds(2))
        let stopping = ContinuousClock.now
        server.signal(SIGTERM)
        stopped.set()
        let status = await server.waitForExit(timeout: 30)
        let shutdown = ContinuousClock.now - stopping
        let (confirmed, failed) = await load.value
        let arrived = try await AMQPPeer.get(queue).map(\.body)
        let lost = Set(confirmed).subtracting(arrived).count
        let duplicates = arrived.count - Set(arrived).count
        #expect(status == 0, "exit status after SIGTERM")
        #expect(confirmed.count > 0 && lost == 0, "every send that returned success is in the queue")
        Self.report("R7 confirmed=\(confirmed.count) failed_requests=\(failed) in_queue=\(arrived.count) lost=\(lost) duplicates=\(duplicates) exit=\(status.map(String.init) ?? "none") shutdown_ms=\(shutdown.milliseconds)")
    }

    /// R13 through scripts/testkit/api_fuzz.py (schemathesis from PyPI); ESB_FUZZ_EXAMPLES sets
    /// the examples per operation (scripts/reliability: 100; default 15).
    @Test func r13TheAdminAPIUnderItsOwnSchemaFuzzerNeverAnswers5xx() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let examples = ProcessInfo.processInfo.environment["ESB_FUZZ_EXAMPLES"] ?? "15"
        let result = try await runCommand("/usr/bin/env", ["python3", TestEnvironment.packageRoot + "/scripts/testkit/api_fuzz.py",
                                                            "http://127.0.0.1:\(server.port)", server.password, examples])
        print(result.stdout.split(separator: "\n").filter { $0.hasPrefix("RELIABILITY") }.joined(separator: "\n"))
        #expect(result.status == 0, "\(result.stdout.suffix(6000))\n\(result.stderr.suffix(2000))")
        #expect(server.process?.isRunning == true, "esbd survived")
    }

    @Test func r8ReloadsUnderHTTPLoadFailNoRequestAndApplyTheChange() async throws {
        let server = try TestServer(name: "r8-before")
        try await server.start()
        defer { Task { await server.stop() } }
        let stop = LoadFlag()
        let load = Task { () -> (ok: Int, failed: [String]) in
            await withTaskGroup(of: (Int, [String]).self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var ok = 0, failed: [String] = []
                        while !stop.isSet {
                            do {
                                let reply = try await server.request("POST", "/esb/api/invoke/esb.helpers.echo", body: Data("r8".utf8),
                                                                     credentials: server.admin)
                                if reply.status == 200 && reply.text == "r8" { ok += 1 } else { failed.append("\(reply.status) \(reply.text)") }
                            } catch {
                                failed.append("\(error)")
                            }
                        }
                        return (ok, failed)
                    }
                }
                return await group.reduce(into: (0, [String]())) { $0.0 += $1.0; $0.1 += $1.1 }
            }
        }
        var reloads = 0
        for round in 1...5 {
            try await Task.sleep(for: .milliseconds(300))
            // max_body_bytes applies live (a name would need a restart); the last round leaves 5.
            try server.writeConfig(name: "r8-before", main: "max_body_bytes = \(round == 5 ? 5 : 1000 * round)")
            server.signal(SIGHUP)
            reloads += 1
        }
        try await Task.sleep(for: .milliseconds(500))
        stop.set()
        let (ok, failed) = await load.value
        let over = try await server.request("POST", "/esb/api/invoke/esb.helpers.echo", body: Data("123456".utf8), credentials: server.admin)
        let within = try await server.request("POST", "/esb/api/invoke/esb.helpers.echo", body: Data("12345".utf8), credentials: server.admin)
        let applied = over.status == 413 && within.status == 200
        #expect(failed.isEmpty, "failed requests during reloads: \(failed.prefix(5))")
        #expect(ok > 0)
        #expect(applied, "the changed setting is applied: \(over.status) \(within.status)")
        Self.report("R8 reloads=\(reloads) requests=\(ok + failed.count) failed=\(failed.count) applied=\(applied)")
    }
}

/// R9 compiles 101 files at once: it runs alone (scripts/test's second phase), not beside
/// suites that wait for their own compiles.
@Suite struct ReliabilityDropTests {
    @Test func r9AHundredDropsGoLiveAndABrokenOneIsReportedWhileTheOldVersionServes() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        func service(_ index: Int, _ answer: String) -> String {
            """
            import ESBService
            struct Drop\(index): Service {
                static let name = "r9.drop\(index)"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .text("\(answer)") }
            }
            """
        }
        try server.drop("r9-000.swift", service(0, "v1"))
        try await server.waitForDeployment("r9-000.swift")
        let started = Date()
        for index in 1...100 { try server.drop(String(format: "r9-%03d.swift", index), service(index, "ok \(index)")) }
        try server.drop("r9-000.swift", service(0, "v2") + "\nlet broken: Int = \"no\"\n")
        for index in 1...100 { try await server.waitForDeployment(String(format: "r9-%03d.swift", index), timeout: 300) }
        let failed = try await server.waitForDeployment("r9-000.swift", status: "failed", timeout: 300)
        let seconds = Date().timeIntervalSince(started)
        var live = 0
        for index in 1...100 where try await server.invoke("r9.drop\(index)").text == "ok \(index)" { live += 1 }
        #expect(live == 100)
        #expect((failed["error"] as? String)?.contains("r9-000.swift:6:") == true, "\(failed["error"] ?? "")")
        #expect(try await server.invoke("r9.drop0").text == "v1", "the older version keeps serving")
        ReliabilityTests.report("R9 dropped=101 live=\(live) broken_reported=\((failed["error"] as? String)?.contains("r9-000.swift:6:") == true) old_version_serving=true seconds=\(Int(seconds))")
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// A flag load loops poll to stop.
final class LoadFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}
