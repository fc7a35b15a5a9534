import Foundation
import Testing

/// Redis for services in a real esbd: `context.kvdb`, named errors, health, a server
/// without `[kvdb]`, and a `[kvdb]` change applied by SIGHUP.
@Suite struct KVDBTests {
    static let service = """
        import ESBService
        import Foundation
        struct KV: Service {
            static let name = "kv.run"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                do {
                    if request.text == "typed" {
                        try await context.kvdb.set("typed", "v1")
                        let value = try await context.kvdb.get("typed") ?? "nil"
                        let counter = try await context.kvdb.increment("typed.n", by: 5)
                        try await context.kvdb.append("typed.l", ["a", "b", "c"])
                        let items = try await context.kvdb.range("typed.l", 1, -1)
                        let deleted = try await context.kvdb.delete("typed", "typed.n", "nope")
                        return .text("\\(value) \\(counter) \\(items) \\(deleted) \\(try await context.kvdb.get("typed") ?? "nil")")
                    }
                    let commands = try JSONDecoder().decode([[String]].self, from: request.payload)
                    if commands.count == 1 {
                        return .text(try await context.kvdb.execute(commands[0]).text ?? "nil")
                    }
                    return .text(try await context.kvdb.pipeline(commands).map { $0.text ?? "nil" }.joined(separator: ","))
                } catch let error as ServiceError {
                    return .text(error.code.rawValue + "|" + error.message)
                }
            }
        }
        """

    func run(_ server: TestServer, _ commands: [[String]]) async throws -> String {
        try await server.request("POST", "/esb/api/invoke/kv.run", body: try JSONEncoder().encode(commands), credentials: server.admin).text
    }

    func kvdbHealth(_ server: TestServer) async throws -> [String: Any]? {
        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        return (health.json?["components"] as? [String: Any])?["kvdb"] as? [String: Any]
    }

    @Test func servicesUseKVDBWithNamedErrorsAndHealthFollowsRedis() async throws {
        let redis = try await PrivateRedis()
        let server = try TestServer()
        try server.writeConfig(sections: "[kvdb]\nport = \(redis.port)\ntimeout_ms = 1000\npool_size = 2\n")
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("kv.swift", Self.service)
        try await server.waitForDeployment("kv.swift")

        #expect(try await run(server, [["SET", "greeting", "hello"]]) == "OK")
        #expect(try await run(server, [["GET", "greeting"]]) == "hello")
        #expect(try await run(server, [["INCR", "n"], ["INCR", "n"], ["GET", "missing"]]) == "1,2,nil")
        #expect(try await run(server, [["LPUSH", "greeting", "x"]]).hasPrefix("kvdb.reply_error|kvdb LPUSH: WRONGTYPE"))
        #expect(try await run(server, [["MULTI"]]).hasPrefix("kvdb.unsupported_command|"))
        #expect(try await run(server, [["select", "2"]]).hasPrefix("kvdb.unsupported_command|"))
        #expect(try await kvdbHealth(server)?["status"] as? String == "ok")
        let typed = try await server.request("POST", "/esb/api/invoke/kv.run", body: Data("typed".utf8), credentials: server.admin).text
        #expect(typed == #"v1 5 ["b", "c"] 2 nil"#)

        try await redis.kill()
        #expect(try await run(server, [["PING"]]).hasPrefix("kvdb.unavailable|"))
        #expect(try await kvdbHealth(server)?["status"] as? String == "degraded")
        #expect(try await server.request("GET", "/esb/ping").status == 200, "the server goes on without Redis")
        try await redis.start()
        var answer = ""
        for _ in 0..<100 where answer != "PONG" {
            answer = try await run(server, [["PING"]])
            if answer != "PONG" { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(answer == "PONG", "recovers by itself")
        #expect(try await server.request("GET", "/metrics").text.contains("esb_kvdb_commands_total"))
    }

    @Test func withoutAKVDBSectionCallsFailWithANamedErrorAndSIGHUPAddsIt() async throws {
        let redis = try await PrivateRedis()
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("kv.swift", Self.service)
        try await server.waitForDeployment("kv.swift")
        let missing = try await run(server, [["PING"]])
        #expect(missing.hasPrefix("kvdb.unavailable|"))
        #expect(missing.contains("[kvdb]"))

        try server.writeConfig(sections: "[kvdb]\nport = \(redis.port)\n")
        server.signal(SIGHUP)
        #expect(await server.notify.wait(for: "READY=1") != nil)
        #expect(try await run(server, [["PING"]]) == "PONG")
    }
}
