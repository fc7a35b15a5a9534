import Foundation
import Testing

/// esbd with `[odb] engine = postgresql` against the PostgreSQL `scripts/services` runs
/// (127.0.0.1:$ESB_PG_PORT, role esb/esb): what it keeps there, and how a start fails.
@Suite struct PostgresServerTests {
    static var port: Int { Int(ProcessInfo.processInfo.environment["ESB_PG_PORT"] ?? "") ?? 55432 }

    /// A new, empty database, made by psql as a DBA would.
    static func createDatabase(port: Int = port) async throws -> String {
        let name = "esb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let result = try await runCommand("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "esb", "-d", "postgres",
                                                            "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE \(name)"],
                                          environment: ["PGPASSWORD": "esb", "PATH": "/usr/bin:/bin"])
        guard result.status == 0 else { throw TestFailure("psql: \(result.stderr)") }
        return name
    }

    /// A server whose `[odb]` is `database` on the test PostgreSQL, with `password` in ./odb.password.
    static func server(database: String, password: String = "esb", port: Int = port, name: String = "test-server",
                       extra: String = "") throws -> TestServer {
        let server = try TestServer(name: name, sections: """
            engine = postgresql
            host = 127.0.0.1
            port = \(port)
            database = \(database)
            username = esb
            password_file = ./odb.password
            \(extra)
            """)
        try writeSecretFile(password + "\n", to: server.directory + "/odb.password")
        return server
    }

    @Test func objectsAndDeploymentsLiveInPostgreSQLAcrossARestart() async throws {
        let database = try await Self.createDatabase()
        let server = try Self.server(database: database)
        try await server.start()
        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        let odb = (health.json?["components"] as? [String: Any])?["odb"] as? [String: Any]
        #expect(odb?["status"] as? String == "ok")
        #expect(odb?["engine"] as? String == "postgresql", "\(health.text)")
        #expect((odb?["detail"] as? String)?.hasPrefix("postgresql postgresql://esb@127.0.0.1:\(Self.port)/\(database)") == true,
                "\(health.text)")

        let created = try await server.request("POST", "/esb/api/definitions/amqp", body: Data(#"""
            {"name": "broker", "host": "127.0.0.1", "username": "guest", "password": "secret-in-postgres"}
            """#.utf8), credentials: server.admin)
        #expect(created.status == 201, "\(created.text)")
        try server.drop("hello.swift", "import ESBService\n" + HotDeployTests.service("Hello", "pg.hello", returning: "v1"))
        try await server.waitForDeployment("hello.swift")
        await server.stop()

        // The registry and the object come back from PostgreSQL; the pickup copy is gone.
        try? FileManager.default.removeItem(atPath: server.pickupDirectory + "/hello.swift")
        try await server.start()
        defer { Task { await server.stop() } }
        #expect(try await server.invoke("pg.hello", "x").text == "v1 x")
        let definition = try await server.request("GET", "/esb/api/definitions/amqp/broker", credentials: server.admin)
        #expect(definition.status == 200)
        #expect(!definition.text.contains("secret-in-postgres"))
    }

    @Test func wrongCredentialsExit78NamingTheODB() async throws {
        let server = try Self.server(database: try await Self.createDatabase(), password: "wrong-password")
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status == 78)
        #expect(result.stderr.contains("[odb]") && result.stderr.contains("password authentication failed"), "\(result.stderr)")
        #expect(!result.stderr.contains("wrong-password"))
        #expect(!TestEnvironment.isListening(port: server.port))
    }

    @Test func aMissingDatabaseExits78NamingIt() async throws {
        let missing = "esb_missing_\(UUID().uuidString.prefix(8).lowercased())"
        let server = try Self.server(database: missing)
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status == 78)
        #expect(result.stderr.contains("[odb]") && result.stderr.contains(missing), "\(result.stderr)")
    }

    /// Nothing listens: esbd retries, saying so, then exits non-zero but not 78, so that
    /// systemd restarts it.
    @Test func anUnreachableServerIsRetriedThenExitsForARestart() async throws {
        let server = try Self.server(database: "esb", port: TestEnvironment.freePort(), extra: "connect_timeout_seconds = 2")
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status != 0 && result.status != 78)
        #expect(result.stderr.contains("ODB not reachable (attempt 1)"), "\(result.stderr)")
        #expect(result.stderr.contains("cannot be reached after"))
    }
}
