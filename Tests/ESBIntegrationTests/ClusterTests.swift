import ESBConfig
import Foundation
import Testing

/// Several esbd on one PostgreSQL ODB (§12): membership, name ownership, one cluster per
/// ODB, and async work taken over from a server that died. Each test has its own database.
@Suite struct ClusterTests {
    /// A server named `name` of cluster `cluster` on `database`, with the `[crypto]` key and
    /// admin password of `keyFrom` when given (every server of a cluster shares them).
    static func member(_ database: String, _ name: String, cluster: String = "test", lease: Int = 10,
                       keyFrom first: TestServer? = nil, sections: String = "") throws -> TestServer {
        let server = try PostgresServerTests.server(database: database, name: name, extra: """
            [cluster]
            name = \(cluster)
            lease_seconds = \(lease)
            \(sections)
            """)
        if let first {
            try FileManager.default.removeItem(atPath: server.directory + "/secret.key")
            try FileManager.default.copyItem(atPath: first.directory + "/secret.key", toPath: server.directory + "/secret.key")
            // One admin for the cluster, as dashboard sessions are signed in with it.
            server.password = first.password
            try writeSecretFile(first.password + "\n", to: server.directory + "/admin.password")
        }
        return server
    }

    /// Servers a and b of one cluster on a new database, both started (the caller stops them).
    static func startPair() async throws -> (TestServer, TestServer) {
        let database = try await PostgresServerTests.createDatabase()
        let a = try member(database, "a")
        let b = try member(database, "b", keyFrom: a)
        try await a.start()
        do {
            try await b.start()
        } catch {
            await a.stop()
            throw error
        }
        return (a, b)
    }

    static func servers(_ server: TestServer) async throws -> [String: [String: Any]] {
        let reply = try await server.request("GET", "/esb/api/cluster", credentials: server.admin)
        guard reply.status == 200, let list = try JSONSerialization.jsonObject(with: reply.body) as? [[String: Any]] else {
            throw TestFailure("GET /esb/api/cluster: \(reply.status) \(reply.text)")
        }
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    @Test func serversOnOneODBListEachOtherUpThenDown() async throws {
        let (a, b) = try await Self.startPair()
        defer { Task { await a.stop() } }

        let listed = try await Self.servers(a)
        #expect(Set(listed.keys) == ["a", "b"])
        #expect(listed["a"]?["status"] as? String == "up")
        #expect(listed["b"]?["status"] as? String == "up")
        #expect(listed["b"]?["address"] as? String == "127.0.0.1:\(b.port)")
        #expect(listed["a"]?["version"] as? String != nil && listed["a"]?["started_at"] as? String != nil
                && listed["a"]?["last_seen"] as? String != nil, "\(listed)")
        let health = try await a.request("GET", "/esb/health", credentials: a.admin)
        let cluster = (health.json?["components"] as? [String: Any])?["cluster"] as? [String: Any]
        #expect(cluster?["status"] as? String == "ok")
        #expect((cluster?["detail"] as? String)?.contains("2 of 2 servers up") == true, "\(health.text)")
        let figures = cluster?["cluster"] as? [String: Any]
        #expect(figures?["name"] as? String == "test" && figures?["servers"] as? Int == 2
                && Set(figures?["up"] as? [String] ?? []).count == 2, "\(health.text)")
        let page = try await SecurityTests().dashboardPage(a, jar: a.directory + "/cookies", path: "/esb/dashboard/cluster")
        #expect(page.contains("Cluster <code>test</code>") && page.contains("127.0.0.1:\(b.port)"), "\(page.prefix(3000))")

        // The dashboard session signed in on a works on b (sessions live in the ODB), and
        // a sign-out on b ends it on a too.
        let jar = a.directory + "/cookies"
        let cookies = (try? String(contentsOfFile: jar, encoding: .utf8)) ?? ""
        let session = cookies.split(separator: "\n").first { $0.contains("esb_session") }?.split(separator: "\t").last.map(String.init) ?? ""
        let onB = try await runCommand("/usr/bin/curl", ["-s", "-D", "-", "-b", "esb_session=\(session)",
                                                         "http://127.0.0.1:\(b.port)/esb/dashboard/cluster"]).stdout
        #expect(onB.contains("Cluster <code>test</code>"), "\(onB.prefix(1000)) \(cookies)")
        let csrf = onB.components(separatedBy: "name=\"csrf\" value=\"").dropFirst().first?.prefix { $0 != "\"" } ?? ""
        _ = try await runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-b", "esb_session=\(session)",
                                                   "--data-urlencode", "csrf=\(csrf)", "http://127.0.0.1:\(b.port)/esb/dashboard/logout"])
        var status = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            status = try await runCommand("/usr/bin/curl", ["-s", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}",
                                                            "http://127.0.0.1:\(a.port)/esb/dashboard/cluster"]).stdout
            if status == "302" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(status == "302", "signed out on b, the session ends on a")

        // A clean stop says so at once.
        await b.stop()
        #expect(try await Self.servers(a)["b"]?["status"] as? String == "down")
    }

    @Test func aSecondServerWithANameInUseExits78AndTheNameComesBackWhenItsHolderDies() async throws {
        let database = try await PostgresServerTests.createDatabase()
        let first = try Self.member(database, "same")
        try await first.start()
        let second = try Self.member(database, "same", keyFrom: first)
        let refused = try await runCommand(TestEnvironment.esbd, ["--config", second.configPath])
        #expect(refused.status == 78)
        #expect(refused.stderr.contains("[main] name 'same' is in use"), "\(refused.stderr)")
        #expect(!TestEnvironment.isListening(port: second.port))

        // kill -9: PostgreSQL ends the session, and the lock with it; the name is free at once.
        first.signal(SIGKILL)
        _ = await first.waitForExit()
        try await second.start()
        await second.stop()
    }

    @Test func aServerOfAnotherClusterNameIsRefused() async throws {
        let database = try await PostgresServerTests.createDatabase()
        let first = try Self.member(database, "one", cluster: "blue")
        try await first.start()
        defer { Task { await first.stop() } }
        let other = try Self.member(database, "two", cluster: "green", keyFrom: first)
        let refused = try await runCommand(TestEnvironment.esbd, ["--config", other.configPath])
        #expect(refused.status == 78)
        #expect(refused.stderr.contains("[cluster] name 'green'") && refused.stderr.contains("'blue'"), "\(refused.stderr)")
    }

    @Test func aSecondServerOnOneSQLiteODBExits78() async throws {
        let first = try TestServer(name: "first")
        try await first.start()
        defer { Task { await first.stop() } }
        let second = try TestServer(name: "second")
        let config = try String(contentsOfFile: second.configPath, encoding: .utf8)
            .replacingOccurrences(of: "path = ./esb.db", with: "path = \(first.directory)/esb.db")
        try config.write(toFile: second.configPath, atomically: true, encoding: .utf8)
        let refused = try await runCommand(TestEnvironment.esbd, ["--config", second.configPath])
        #expect(refused.status == 78)
        #expect(refused.stderr.contains("is in use: another server is running on it"), "\(refused.stderr)")
    }

    /// A server dies (kill -9) while a callback it claimed runs: once its lease runs out,
    /// the other server delivers the callback again, saying `redelivered`.
    @Test func aDeadServersAsyncWorkIsTakenOverAfterItsLease() async throws {
        let (a, b) = try await Self.startPair()
        let shared = a.directory + "/async"
        try FileManager.default.createDirectory(atPath: shared + "/callbacks", withIntermediateDirectories: true)
        defer { Task { await b.stop() } }
        for server in [a, b] {
            try server.drop("async.swift", AsyncFixture.services(directory: shared))
            try await server.waitForDeployment("async.swift")
        }

        let order = try JSONSerialization.data(withJSONObject: ["mode": "background", "payload": "k:0", "context": "hold"])
        let started = try await a.request("POST", "/esb/api/invoke/async.start", body: order, credentials: a.admin)
        let cid = try #require((started.json?["cids"] as? [String])?.first, "\(started.text)")
        // Either server may claim the work; wait for the first delivery, then kill whoever holds it.
        let first = try await Self.waitForCallbacks(1, in: shared)
        #expect(first[0]["redelivered"] as? Bool == false)
        let holder = try await Self.claimer(of: cid, on: b)
        let (dead, survivor) = holder == "a" ? (a, b) : (b, a)
        dead.signal(SIGKILL)
        _ = await dead.waitForExit()
        _ = FileManager.default.createFile(atPath: shared + "/release", contents: Data())

        let both = try await Self.waitForCallbacks(2, in: shared)
        #expect(both.contains { $0["redelivered"] as? Bool == true && $0["cid"] as? String == cid }, "\(both)")
        let reply = try await survivor.request("GET", "/esb/api/async/\(cid)", credentials: survivor.admin)
        #expect(reply.json?["status"] as? String == "done", "\(reply.text)")
        #expect(survivor.log.contains("took over async work"), "\(survivor.log.suffix(2000))")
        if survivor === a { await a.stop() }
    }

    /// The server holding the claim on `cid`, as the ODB says (asked with psql, as an operator would).
    static func claimer(of cid: String, on server: TestServer) async throws -> String {
        let result = try await runCommand("/usr/bin/psql", [
            "-h", "127.0.0.1", "-p", "\(PostgresServerTests.port)", "-U", "esb", "-d", try database(of: server),
            "-Atc", "SELECT claimed_by FROM async_invocation WHERE cid = '\(cid)'",
        ], environment: ["PGPASSWORD": "esb", "PATH": "/usr/bin:/bin"])
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func database(of server: TestServer) throws -> String {
        let config = try String(contentsOfFile: server.configPath, encoding: .utf8)
        guard let line = config.split(separator: "\n").first(where: { $0.hasPrefix("database = ") }) else {
            throw TestFailure("no database in \(server.configPath)")
        }
        return String(line.dropFirst("database = ".count))
    }

    static func waitForCallbacks(_ count: Int, in directory: String, timeout: Double = 120) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let folder = directory + "/callbacks"
            let found = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap { name -> [String: Any]? in
                guard let data = FileManager.default.contents(atPath: folder + "/" + name) else { return nil }
                return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            }
            if found.count >= count { return found }
            if Date() > deadline { throw TestFailure("\(found.count) of \(count) callbacks arrived in \(timeout) s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

extension ClusterTests {
    /// An HTTP channel created through one server serves on the other (LISTEN/NOTIFY), and
    /// its deletion spreads too.
    @Test func anObjectChangedThroughOneServerAppliesOnTheOther() async throws {
        let (a, b) = try await Self.startPair()
        defer { Task { await a.stop() } }
        defer { Task { await b.stop() } }
        let path = try await Self.channel("spread", through: a, deployedOn: [a, b])
        #expect(try await Self.waitFor(b, path) { $0.status == 200 && $0.text == "spread " }, "\(b.log.suffix(2000))")

        let deleted = try await a.request("DELETE", "/esb/api/channels/http/spread", credentials: a.admin)
        #expect(deleted.status == 204)
        #expect(try await Self.waitFor(b, path) { $0.status == 404 })
    }

    /// A change whose notification never arrived (as through a LISTEN connection that broke
    /// without saying so) still applies: the servers poll the objects' change counter.
    @Test func anObjectChangeWhoseNotificationIsLostAppliesByPolling() async throws {
        let database = try await PostgresServerTests.createDatabase()
        let a = try PostgresServerTests.server(database: database, name: "poll")
        try await a.start()
        defer { Task { await a.stop() } }
        let path = try await Self.channel("polled", through: a, deployedOn: [a])
        #expect(try await Self.waitFor(a, path) { $0.status == 200 })

        // Another writer's change, committed with its count but without NOTIFY.
        _ = try await ClusterReliabilityTests.psql(database, """
            BEGIN; DELETE FROM config_object WHERE kind = 'channel_plain_http' AND name = 'polled';
            UPDATE esb_meta SET value = ((value)::bigint + 1)::text WHERE key = 'objects_version'; COMMIT;
            """)
        #expect(try await Self.waitFor(a, path) { $0.status == 404 }, "\(a.log.suffix(2000))")
    }

    /// Deploys service `cluster.NAME` (answering "NAME " and the payload) on `servers`, then
    /// creates HTTP channel `NAME` for it through `server`; returns its path.
    static func channel(_ name: String, through server: TestServer, deployedOn servers: [TestServer]) async throws -> String {
        for member in servers {
            try member.drop("\(name).swift", "import ESBService\n" + HotDeployTests.service(name.capitalized, "cluster.\(name)", returning: name))
            try await member.waitForDeployment("\(name).swift")
        }
        let path = "/\(name)-\(UUID().uuidString.prefix(8))"
        let created = try await server.request("POST", "/esb/api/channels/http", body: Data("""
            {"name": "\(name)", "url_path": "\(path)", "service": "cluster.\(name)", "data_format": "text"}
            """.utf8), credentials: server.admin)
        #expect(created.status == 201, "\(created.text)")
        return path
    }

    /// Polls `path` on `server` (as the admin when `signedIn`) until `condition` holds (true) or 60 s pass (false).
    static func waitFor(_ server: TestServer, _ path: String, signedIn: Bool = false,
                        _ condition: (TestServer.Reply) -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if condition(try await server.request("GET", path, credentials: signedIn ? server.admin : nil)) { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}

extension ClusterTests {
    /// A unit dropped on one server goes live on the other, which loads the library the
    /// first built (same hash, toolchain and SDK) instead of compiling. A version that
    /// cannot build on one server (a module only the other has) fails there alone, and
    /// the previous version keeps serving there.
    @Test func aUnitDeployedOnOneServerGoesLiveOnEveryServer() async throws {
        let modules = TestEnvironment.temporaryDirectory("cluster-prebuilt")
        try "public func greeting(_ name: String) -> String { \"hello, \" + name }\n"
            .write(toFile: modules + "/ClusterGreeter.swift", atomically: true, encoding: .utf8)
        let built = try await runCommand("/usr/bin/env", ["swiftc", "-emit-library", "-emit-module", "-parse-as-library",
                                                           "-module-name", "ClusterGreeter", "-emit-module-path",
                                                           modules + "/ClusterGreeter.swiftmodule",
                                                           "-o", modules + "/libClusterGreeter.so", modules + "/ClusterGreeter.swift"])
        #expect(built.status == 0, "\(built.stderr)")

        let database = try await PostgresServerTests.createDatabase()
        let a = try Self.member(database, "a", sections: "[hot_deploy]\nextra_module_paths = \(modules)")
        let b = try Self.member(database, "b", keyFrom: a)
        try await a.start()
        defer { Task { await a.stop() } }
        try await b.start()
        defer { Task { await b.stop() } }

        try a.drop("greet.swift", "import ESBService\n" + HotDeployTests.service("Greet", "cluster.greet", returning: "v1"))
        try await a.waitForDeployment("greet.swift")
        #expect(try await Self.waitForServers(b, unit: "greet.swift") { $0 == ["a": "deployed", "b": "deployed"] })
        #expect(try await b.invoke("cluster.greet", "x").text == "v1 x")
        #expect(b.log.contains("deploying what another server of the cluster deployed"), "\(b.log.suffix(2000))")
        #expect(b.log.contains("esb.cached=true"), "b loaded a's build, not compiling: \(b.log.suffix(2000))")

        try a.drop("greet.swift", """
            import ESBService
            import ClusterGreeter
            struct Greet: Service {
                static let name = "cluster.greet"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    .text(greeting(request.text))
                }
            }
            """)
        try await a.waitForDeployment("greet.swift", afterVersion: 1)
        #expect(try await a.invoke("cluster.greet", "x").text == "hello, x")
        #expect(try await Self.waitForServers(b, unit: "greet.swift") { $0 == ["a": "deployed", "b": "failed"] })
        let units = try await b.request("GET", "/esb/api/deployments", credentials: b.admin)
        let unit = (try JSONSerialization.jsonObject(with: units.body) as? [[String: Any]])?.first { $0["name"] as? String == "greet.swift" }
        let onB = (unit?["servers"] as? [[String: Any]])?.first { $0["name"] as? String == "b" }
        #expect((onB?["error"] as? String)?.contains("no such module 'ClusterGreeter'") == true, "\(units.text)")
        #expect(unit?["status"] as? String == "deployed", "the unit is deployed; it failed on b alone")
        #expect(try await b.invoke("cluster.greet", "x").text == "v1 x", "b keeps its previous version")
    }

    /// Polls `GET /esb/api/deployments` on `server` until `unit`'s per-server statuses satisfy `condition`.
    static func waitForServers(_ server: TestServer, unit name: String,
                               _ condition: ([String: String]) -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(120)
        var last = ""
        while Date() < deadline {
            let reply = try await server.request("GET", "/esb/api/deployments", credentials: server.admin)
            last = reply.text
            let units = (try? JSONSerialization.jsonObject(with: reply.body) as? [[String: Any]]) ?? []
            let servers = (units.first { $0["name"] as? String == name }?["servers"] as? [[String: Any]]) ?? []
            let statuses = Dictionary(servers.map { ($0["name"] as? String ?? "", $0["status"] as? String ?? "") }) { $1 }
            if condition(statuses) { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("per-server statuses of \(name) never matched; last: \(last)")
        return false
    }
}

extension ClusterTests {
    /// Every server of a cluster shares the `[crypto]` key: one with another key refuses to
    /// start, naming its key file, rather than failing each connection later.
    @Test func aServerWhoseKeyCannotOpenTheStoredSecretsExits78() async throws {
        let database = try await PostgresServerTests.createDatabase()
        let a = try Self.member(database, "a")
        try await a.start()
        defer { Task { await a.stop() } }
        let created = try await a.request("POST", "/esb/api/definitions/amqp", body: Data(#"""
            {"name": "sealed", "host": "127.0.0.1", "username": "guest", "password": "only-a-knows"}
            """#.utf8), credentials: a.admin)
        #expect(created.status == 201, "\(created.text)")
        let b = try Self.member(database, "b")  // its own, new key
        let refused = try await runCommand(TestEnvironment.esbd, ["--config", b.configPath])
        #expect(refused.status == 78)
        #expect(refused.stderr.contains("[crypto] secret_key_path '\(b.directory)/secret.key' cannot decrypt")
                && refused.stderr.contains("def_amqp 'sealed'"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("only-a-knows"))
    }
}
