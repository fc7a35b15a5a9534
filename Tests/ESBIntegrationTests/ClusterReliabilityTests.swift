import AsyncHTTPClient
import Foundation
import Synchronization
import Testing

/// The cluster's reliability targets (TARGETS.md R18, R19), run by scripts/reliability one at a
/// time. Each prints one `Rn …` line of figures. `ESB_RELIABILITY_REDUCED=1` (CI) uses smaller
/// counts.
@Suite(.serialized) struct ClusterReliabilityTests {
    static var reduced: Bool { ProcessInfo.processInfo.environment["ESB_RELIABILITY_REDUCED"] == "1" }

    /// R18: three servers on one PostgreSQL with thousands of pending retries; one, running
    /// some of their attempts, is killed with `kill -9` under HTTP load. Every accepted
    /// invocation calls back; a callback comes twice only where the kill cut a delivery, and
    /// then the second says `redelivered`; the other servers answer every request meanwhile.
    @Test func r18AServerKilledUnderLoadWithPendingRetriesLosesNothing() async throws {
        let count = Self.reduced ? 1000 : 5000
        let database = try await PostgresServerTests.createDatabase()
        let a = try ClusterTests.member(database, "a", lease: 6)
        let b = try ClusterTests.member(database, "b", lease: 6, keyFrom: a)
        let c = try ClusterTests.member(database, "c", lease: 6, keyFrom: a)
        let servers = [a, b, c]
        for server in servers { try await server.start() }
        defer { Task { for server in servers { await server.stop() } } }
        let shared = a.directory + "/async"
        try FileManager.default.createDirectory(atPath: shared + "/callbacks", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: shared + "/fail", contents: Data())
        for server in servers {
            try server.drop("async.swift", AsyncFixture.services(directory: shared))
            try await server.waitForDeployment("async.swift")
        }

        let order = try JSONSerialization.data(withJSONObject: [
            "mode": "background", "payload": "marker", "repeats": 1000, "interval_ms": 5000, "count": count])
        let started = try await a.request("POST", "/esb/api/invoke/async.start", body: order, credentials: a.admin)
        let cids = Set(try #require(started.json?["cids"] as? [String], "\(started.text)"))
        #expect(cids.count == count)
        try await Self.waitUntil("every invocation failed once", timeout: 300) {
            try await Self.psql(database, "SELECT count(*) FROM async_invocation WHERE attempts = 0") == "0"
        }

        // Every server under HTTP load from before the kill to the end (b's requests fail once
        // it is killed: only the survivors' are counted). b is killed while every invocation is
        // pending and b runs some of their attempts; then the attempts succeed.
        // Attempts take 0.3 s from now on, so that b holds running work when it is killed.
        _ = FileManager.default.createFile(atPath: shared + "/slow", contents: Data())
        let load = HTTPLoad(servers: [a, c])
        let loading = Task { await load.run() }
        let victimLoad = HTTPLoad(servers: [b])
        let victimLoading = Task { await victimLoad.run() }
        let heldByB = "SELECT count(*) FROM async_invocation WHERE claimed_by = 'b' AND (status = 'running' OR callback_status = 'running')"
        try? await Self.waitUntil("b runs some of the work", timeout: 60) { try await Self.psql(database, heldByB) != "0" }
        let pendingAtKill = Int(try await Self.psql(database, "SELECT count(*) FROM async_invocation WHERE status IN ('pending', 'running')")) ?? 0
        b.signal(SIGKILL)
        _ = await b.waitForExit()
        let killed = Date()
        // Counted before anything else: past the lease the survivors take b's claims over.
        let cut = Int(try await Self.psql(database, heldByB)) ?? 0
        victimLoad.stop()
        await victimLoading.value
        #expect(victimLoad.requests > 0, "b was under load when it was killed")
        #expect(pendingAtKill == count, "every accepted invocation still pending at the kill")
        try FileManager.default.removeItem(atPath: shared + "/fail")
        try await Self.waitUntil("every invocation called back", timeout: 600) {
            cids.isSubset(of: Set(Self.callbacks(in: shared).compactMap { $0["cid"] as? String }))
        }
        let recovered = Date().timeIntervalSince(killed)
        try await Self.waitUntil("every callback recorded delivered", timeout: 120) {
            try await Self.psql(database, "SELECT count(*) FROM async_invocation WHERE callback_status <> 'delivered'") == "0"
        }
        load.stop()
        await loading.value

        let callbacks = Self.callbacks(in: shared)
        let byCID = Dictionary(grouping: callbacks) { $0["cid"] as? String ?? "" }
        let lost = cids.subtracting(byCID.keys)
        let redelivered = callbacks.filter { $0["redelivered"] as? Bool == true }.count
        #expect(lost.isEmpty, "\(lost.count) accepted invocations never called back")
        #expect(callbacks.allSatisfy { $0["ok"] as? Bool == true })
        #expect(byCID.values.allSatisfy { group in
            group.filter { $0["redelivered"] as? Bool != true }.count <= 1 && group.count <= 2
        }, "a second delivery only where the kill cut the first, marked redelivered")
        #expect(redelivered <= 16, "at most b's [async] max_concurrency callbacks were running at the kill")
        #expect(load.failures == 0, "\(load.failures) failed requests on the survivors: \(load.firstFailure ?? "")")
        if cut > 0 {
            #expect(a.log.contains("took over async work") || c.log.contains("took over async work"))
        }
        print("R18 3 servers, \(count) pending retries, b killed -9 with \(pendingAtKill) pending, \(cut) of them running on b: lost 0 of \(cids.count); "
            + "\(callbacks.count) callbacks, \(redelivered) redelivered; b answered \(victimLoad.requests - victimLoad.failures) requests "
            + "before the kill; survivors answered \(load.requests) requests, "
            + "\(load.failures) failed; all called back \(String(format: "%.1f", recovered)) s after the kill (lease 6 s)")
    }

    /// R19: PostgreSQL stopped and started again under load. Requests that need the ODB get
    /// 503 `odb.unavailable` meanwhile and succeed again without a restart; a deployed service
    /// answers throughout; every accepted async invocation calls back.
    @Test func r19PostgresRestartedUnderLoadRecoversAndLosesNothing() async throws {
        let postgres = try await PrivatePostgres.start()
        let database = try await PostgresServerTests.createDatabase(port: postgres.port)
        let server = try PostgresServerTests.server(database: database, port: postgres.port, name: "r19")
        try await server.start()
        defer { Task { await server.stop(); await postgres.stop() } }  // esbd first: its stop needs the ODB
        let shared = server.directory + "/async"
        try FileManager.default.createDirectory(atPath: shared + "/callbacks", withIntermediateDirectories: true)
        try server.drop("async.swift", AsyncFixture.services(directory: shared))
        try await server.waitForDeployment("async.swift")
        let pid = try #require(server.process?.processIdentifier)

        let load = ODBLoad(server: server)
        let loading = Task { await load.run() }
        try await Task.sleep(for: .seconds(3))
        try await postgres.stopServer()
        let stopped = Date()
        try await Self.waitUntil("odb.unavailable answered", timeout: 180) { load.unavailable > 0 }
        let firstUnavailable = Date().timeIntervalSince(stopped)
        try await Task.sleep(for: .seconds(2))
        try await postgres.startServer()
        let restarted = Date()
        let unavailableBefore = load.unavailable
        try await Self.waitUntil("the ODB answers again", timeout: 180) { load.readsSince(restarted) > 0 }
        let recovery = Date().timeIntervalSince(restarted)
        try await Task.sleep(for: .seconds(3))
        load.stop()
        await loading.value

        let accepted = load.accepted
        try? await Self.waitUntil("every accepted invocation called back", timeout: 300) {
            accepted.isSubset(of: Set(Self.callbacks(in: shared).compactMap { $0["cid"] as? String }))
        }
        let missing = accepted.subtracting(Self.callbacks(in: shared).compactMap { $0["cid"] as? String })
        var states: [String] = []
        for cid in missing.prefix(3) {
            states.append(try await server.request("GET", "/esb/api/async/\(cid)", credentials: server.admin).text)
        }
        #expect(missing.isEmpty, "\(missing.count) of \(accepted.count) accepted invocations never called back: \(states)")
        #expect(load.unexpected.isEmpty, "answers other than 200 or 503 odb.unavailable: \(load.unexpected.prefix(5))")
        #expect(load.serviceFailures == 0, "the deployed service failed \(load.serviceFailures) times while the ODB was down")
        #expect(server.process?.processIdentifier == pid && server.process?.isRunning == true, "esbd was not restarted")
        // Requests that need the ODB answer 503 while it is away; none waits until the client gives up.
        #expect(load.clientTimeouts == 0, "\(load.clientTimeouts) ODB requests got no answer while PostgreSQL was away")
        print("R19 PostgreSQL stopped under load: first odb.unavailable \(String(format: "%.1f", firstUnavailable)) s after the stop, "
            + "\(unavailableBefore) ODB requests answered 503 and none went unanswered; ODB answers "
            + "\(String(format: "%.1f", recovery)) s after the restart; service calls \(load.serviceCalls), 0 failed; "
            + "\(accepted.count) async invocations accepted, 0 lost")
    }

    /// A server told to stop while PostgreSQL is away stops cleanly, within its graceful
    /// time and the ODB calls' bounds, instead of waiting on the ODB until the service
    /// group gives up and aborts the process; a request that needs the ODB meanwhile is
    /// answered `odb.unavailable`.
    @Test func aServerStopsCleanlyOnSIGTERMWhilePostgresIsDown() async throws {
        let postgres = try await PrivatePostgres.start()
        let database = try await PostgresServerTests.createDatabase(port: postgres.port)
        let server = try PostgresServerTests.server(database: database, port: postgres.port, name: "down")
        try await server.start()
        defer { Task { await server.stop(); await postgres.stop() } }
        try await postgres.stopServer()

        let created = try await server.request("POST", "/esb/api/definitions/amqp", body: Data(#"""
            {"name": "while-down", "host": "127.0.0.1", "username": "guest", "password": "guest"}
            """#.utf8), credentials: server.admin)
        #expect(created.status == 503, "\(created.text)")
        #expect((created.json?["error"] as? [String: Any])?["code"] as? String == "odb.unavailable", "\(created.text)")

        server.signal(SIGTERM)
        let status = await server.waitForExit(timeout: 120)
        #expect(status == 0, "esbd's exit: \(String(describing: status)); stderr:\n\(server.log.suffix(4000))")
        #expect(server.log.contains("stopped"), "\(server.log.suffix(2000))")
    }

    static func waitUntil(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !(try await condition()) {
            if Date() > deadline { throw TestFailure("not within \(timeout) s: \(what)") }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    static func psql(_ database: String, _ sql: String, port: Int = PostgresServerTests.port) async throws -> String {
        let result = try await runCommand("/usr/bin/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", "esb", "-d", database, "-Atc", sql],
                                          environment: ["PGPASSWORD": "esb", "PATH": "/usr/bin:/bin"])
        guard result.status == 0 else { throw TestFailure("psql: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Every callback delivery the fixture's callback service wrote under `directory`.
    static func callbacks(in directory: String) -> [[String: Any]] {
        let folder = directory + "/callbacks"
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap { name in
            guard let data = FileManager.default.contents(atPath: folder + "/" + name) else { return nil }
            return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        }
    }
}

/// Requests to a deployed service and `/esb/ping` on some servers, four at a time, until
/// stopped; counts what did not answer 200.
final class HTTPLoad: Sendable {
    let servers: [TestServer]
    private let counts = Mutex((requests: 0, failures: 0, first: String?.none))
    private let stopping = Atomic(false)

    init(servers: [TestServer]) { self.servers = servers }

    var requests: Int { counts.withLock { $0.requests } }
    var failures: Int { counts.withLock { $0.failures } }
    var firstFailure: String? { counts.withLock { $0.first } }
    func stop() { stopping.store(true, ordering: .relaxed) }

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask { [self] in
                    var turn = 0
                    while !stopping.load(ordering: .relaxed) {
                        let server = servers[(worker + turn) % servers.count]
                        turn += 1
                        var failure: String?
                        do {
                            let reply = turn % 2 == 0
                                ? try await server.request("GET", "/esb/ping")
                                : try await server.request("POST", "/esb/api/invoke/async.count", body: Data("marker".utf8),
                                                           credentials: server.admin)
                            if reply.status != 200 { failure = "\(reply.status) \(reply.text.prefix(200))" }
                        } catch {
                            failure = "\(error)"
                        }
                        counts.withLock { counts in
                            counts.requests += 1
                            if let failure {
                                counts.failures += 1
                                if counts.first == nil { counts.first = failure }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// R19's load on one server: async accepts (two callers), reads of stored objects, and calls
/// of a deployed service that needs no ODB, each until stopped.
final class ODBLoad: Sendable {
    let server: TestServer
    private struct State {
        var accepted: Set<String> = []
        var unavailable = 0
        var lastRead: Date?
        var unexpected: [String] = []
        var serviceCalls = 0
        var serviceFailures = 0
        var clientTimeouts = 0
    }
    private let state = Mutex(State())
    private let stopping = Atomic(false)

    init(server: TestServer) { self.server = server }

    var accepted: Set<String> { state.withLock { $0.accepted } }
    var unavailable: Int { state.withLock { $0.unavailable } }
    var unexpected: [String] { state.withLock { $0.unexpected } }
    var serviceCalls: Int { state.withLock { $0.serviceCalls } }
    var serviceFailures: Int { state.withLock { $0.serviceFailures } }
    /// Requests that needed the ODB and were still waiting for it when the test's HTTP client
    /// gave up (the pool holds them while PostgreSQL is away); counted, not failed.
    var clientTimeouts: Int { state.withLock { $0.clientTimeouts } }
    func readsSince(_ date: Date) -> Int { state.withLock { ($0.lastRead ?? .distantPast) > date ? 1 : 0 } }
    func stop() { stopping.store(true, ordering: .relaxed) }

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 { group.addTask { [self] in await loop { try await accept() } } }
            group.addTask { [self] in await loop { try await read() } }
            group.addTask { [self] in await loop { try await callService() } }
        }
    }

    private func loop(_ body: () async throws -> Void) async {
        while !stopping.load(ordering: .relaxed) {
            do {
                try await body()
            } catch let error as HTTPClientError where error == .readTimeout || error == .deadlineExceeded {
                state.withLock { $0.clientTimeouts += 1 }
            } catch {
                state.withLock { $0.unexpected.append("\(error)") }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// An accepted invocation has a cid; a refused one (the ODB down) is not accepted.
    private func accept() async throws {
        let order = try JSONSerialization.data(withJSONObject: ["mode": "plain", "payload": "r19:0"])
        let reply = try await server.request("POST", "/esb/api/invoke/async.start", body: order, credentials: server.admin)
        if reply.status == 200, let cids = reply.json?["cids"] as? [String] {
            state.withLock { $0.accepted.formUnion(cids) }
        } else {
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    private func read() async throws {
        let reply = try await server.request("GET", "/esb/api/definitions/amqp", credentials: server.admin)
        state.withLock { state in
            if reply.status == 200 {
                state.lastRead = Date()
            } else if reply.status == 503, (reply.json?["error"] as? [String: Any])?["code"] as? String == "odb.unavailable", reply.headers["retry-after"] != nil {
                state.unavailable += 1
            } else {
                state.unexpected.append("GET /esb/api/definitions/amqp: \(reply.status) \(reply.text.prefix(200))")
            }
        }
        if reply.status != 200 { try await Task.sleep(for: .milliseconds(200)) }
    }

    private func callService() async throws {
        let reply = try await server.request("POST", "/esb/api/invoke/async.count", body: Data("r19".utf8), credentials: server.admin)
        state.withLock { state in
            state.serviceCalls += 1
            if reply.status != 200 { state.serviceFailures += 1 }
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// A PostgreSQL of a test's own (on a free port, in a new directory), for a test that stops
/// and starts it without touching the shared one. The server runs in the foreground as a child
/// (pg_ctl's daemon would outlive what Foundation's Process can wait for); as root, its
/// programs run as the postgres user, which PostgreSQL requires.
final class PrivatePostgres: @unchecked Sendable {
    let port = TestEnvironment.freePort()
    let directory = "/tmp/esb-pg-\(UUID().uuidString.prefix(8).lowercased())"
    private let bin: String
    private let process = Mutex<Process?>(nil)

    private init(bin: String) { self.bin = bin }

    static func start() async throws -> PrivatePostgres {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.compactMap(Int.init).max() else { throw TestFailure("postgresql is not installed") }
        let postgres = PrivatePostgres(bin: "/usr/lib/postgresql/\(version)/bin")
        try FileManager.default.createDirectory(atPath: postgres.directory, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        if getuid() == 0 { try FileManager.default.setAttributes([.ownerAccountName: "postgres"], ofItemAtPath: postgres.directory) }
        try await postgres.run(postgres.bin + "/initdb", ["-D", postgres.directory + "/data", "-U", "postgres",
                                                          "--auth-local=trust", "--auth-host=scram-sha-256"])
        try await postgres.startServer()
        try await postgres.run("/usr/bin/psql", ["-q", "-h", postgres.directory, "-p", "\(postgres.port)", "-U", "postgres",
                                                 "-d", "postgres", "-c", "CREATE ROLE esb LOGIN CREATEDB PASSWORD 'esb'"])
        return postgres
    }

    func startServer() async throws {
        let child = Process()
        let command = [bin + "/postgres", "-D", directory + "/data", "-p", "\(port)", "-k", directory,
                       "-c", "listen_addresses=127.0.0.1"]
        child.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/sbin/runuser" : command[0])
        child.arguments = getuid() == 0 ? ["-u", "postgres", "--"] + command : Array(command.dropFirst())
        let log = FileHandle(forWritingAtPath: "/dev/null")
        child.standardOutput = log
        child.standardError = log
        try child.run()
        process.withLock { $0 = child }
        let deadline = Date().addingTimeInterval(60)
        while try await runCommand("/usr/bin/pg_isready", ["-q", "-h", "127.0.0.1", "-p", "\(port)"]).status != 0 {
            if Date() > deadline { throw TestFailure("the private postgresql did not start on \(port)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// A fast shutdown (SIGINT to the postmaster), waited for.
    func stopServer() async throws {
        guard let child = process.withLock({ $0 }) else { return }
        if let text = try? String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8),
           let pid = text.split(separator: "\n").first.flatMap({ Int32($0) }) {
            kill(pid, SIGINT)
        }
        let deadline = Date().addingTimeInterval(60)
        while child.isRunning {
            if Date() > deadline { child.terminate() }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.withLock { $0 = nil }
    }

    func stop() async {
        try? await stopServer()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs a PostgreSQL program to its end, as the postgres user when root.
    private func run(_ path: String, _ arguments: [String]) async throws {
        let result = getuid() == 0
            ? try await runCommand("/usr/sbin/runuser", ["-u", "postgres", "--", path] + arguments)
            : try await runCommand(path, arguments)
        guard result.status == 0 else { throw TestFailure("\(path): \(result.stderr)") }
    }
}
