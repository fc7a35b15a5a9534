import Foundation
import Testing

/// `esb odb copy` (§12): one server's SQLite ODB into an empty PostgreSQL database, the way
/// from one server into a cluster. Objects (secrets sealed again with the target's key), the
/// deployment registry and pending async work arrive; nothing is copied while a server runs
/// or into an ODB that holds anything.
@Suite struct ODBCopyTests {
    @Test func aStoppedServersODBIsCopiedIntoAnEmptyPostgresDatabaseAndServesThere() async throws {
        let fixture = try await AsyncFixture()
        let a = fixture.server
        let created = try await a.request("POST", "/esb/api/definitions/amqp", body: Data(#"""
            {"name": "copied", "host": "127.0.0.1", "username": "guest", "password": "sealed-twice"}
            """#.utf8), credentials: a.admin)
        #expect(created.status == 201, "\(created.text)")
        // Pending work: a retry that fails while DIR/fail exists, due again every 2 s.
        _ = FileManager.default.createFile(atPath: fixture.directory + "/fail", contents: Data())
        let order = try JSONSerialization.data(withJSONObject: [
            "mode": "background", "payload": "marker", "repeats": 100, "interval_ms": 2000, "context": "copied"])
        let started = try await a.request("POST", "/esb/api/invoke/async.start", body: order, credentials: a.admin)
        let cid = try #require((started.json?["cids"] as? [String])?.first, "\(started.text)")
        #expect(try await ClusterTests.waitFor(a, "/esb/api/async/\(cid)", signedIn: true) { ($0.json?["attempts"] as? Int ?? 0) >= 1 })

        // A scheduled job that ran once at its creation: its next run is an hour on, and stays so.
        let job = try await a.request("POST", "/esb/api/scheduler", body: Data(#"""
            {"name": "hourly", "service": "async.count", "job_type": "interval_based", "hours": 1, "extra": "job"}
            """#.utf8), credentials: a.admin)
        #expect(job.status == 201, "\(job.text)")
        #expect(try await ClusterTests.waitFor(a, "/esb/api/scheduler/hourly", signedIn: true) { $0.json?["last_run"] is [String: Any] })
        let nextRun = try #require(try await a.request("GET", "/esb/api/scheduler/hourly", credentials: a.admin).json?["next_run_at"] as? String)

        let database = try await PostgresServerTests.createDatabase()
        let b = try PostgresServerTests.server(database: database, name: "b")  // its own, new key
        let arguments = ["odb", "copy", "--from", a.configPath, "--to", b.configPath]

        let whileRunning = try await runCommand(TestEnvironment.esb, arguments)
        #expect(whileRunning.status != 0)
        #expect(whileRunning.stderr.contains("is in use") && whileRunning.stderr.contains("Stop the server"),
                "\(whileRunning.stderr)")

        await a.stop()
        let copied = try await runCommand(TestEnvironment.esb, arguments)
        #expect(copied.status == 0, "\(copied.stderr)")
        #expect(copied.stdout.contains("objects: 2 (1 secret(s) sealed with the target's key)"), "\(copied.stdout)")
        #expect(copied.stdout.contains("scheduled jobs' schedules: 1"), "\(copied.stdout)")
        #expect(copied.stdout.contains("deployment units: 1"), "\(copied.stdout)")
        #expect(copied.stdout.contains("pending async invocations: 1"), "\(copied.stdout)")
        #expect(!copied.stdout.contains("sealed-twice"))

        // The source is marked: a server started on it again would run the copied work twice.
        try await a.start(waitForReady: false)
        #expect(await a.waitForExit(timeout: 60) == 78)
        #expect(a.log.contains("was copied into") && a.log.contains("DELETE FROM esb_meta WHERE key = 'copied_to'"), "\(a.log.suffix(2000))")

        let again = try await runCommand(TestEnvironment.esb, arguments)
        #expect(again.status != 0)
        #expect(again.stderr.contains("is not empty: it holds 2 object(s), 1 deployment unit(s), 1 async invocation(s)"),
                "\(again.stderr)")

        // b's key differs from a's: it starts only if every secret was sealed again with it.
        try FileManager.default.removeItem(atPath: fixture.directory + "/fail")
        try await b.start()
        defer { Task { await b.stop() } }
        let definition = try await b.request("GET", "/esb/api/definitions/amqp/copied", credentials: b.admin)
        #expect(definition.status == 200, "\(definition.text)")
        #expect(try await ClusterTests.waitFor(b, "/esb/api/async/\(cid)", signedIn: true) { $0.json?["status"] as? String == "done" })
        let callbacks = try await ClusterTests.waitForCallbacks(1, in: fixture.directory)
        #expect(callbacks.contains { $0["cid"] as? String == cid && $0["context"] as? String == "copied" }, "\(callbacks)")
        let hourly = try await b.request("GET", "/esb/api/scheduler/hourly", credentials: b.admin)
        #expect(hourly.json?["next_run_at"] as? String == nextRun, "the job goes on where it was: \(hourly.text)")
        let greeted = try await b.request("POST", "/esb/api/invoke/async.count", body: Data("marker".utf8), credentials: b.admin)
        #expect(greeted.status == 200, "\(greeted.text)")
    }

    @Test func aMissingSourceFileIsNamedAndNothingIsCreated() async throws {
        let source = try TestServer(name: "gone")
        let target = try TestServer(name: "target")
        let copied = try await runCommand(TestEnvironment.esb, ["odb", "copy", "--from", source.configPath, "--to", target.configPath])
        #expect(copied.status != 0)
        #expect(copied.stderr.contains("does not exist: nothing to copy"), "\(copied.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target.directory + "/esb.db"))
    }
}
