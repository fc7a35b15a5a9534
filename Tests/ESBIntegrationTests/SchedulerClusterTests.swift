import Foundation
import Testing

/// Scheduled jobs on a cluster of servers sharing one PostgreSQL ODB (INTERFACES.md §11, §12):
/// each due run happens on exactly one server, and a server that dies mid-run does not
/// block the job's next runs.
@Suite(.serialized) struct SchedulerClusterTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// Servers a and b with the recorder deployed (a deploy on one reaches both).
    static func pair(lease: Int = 10, record: String) async throws -> (TestServer, TestServer) {
        let database = try await PostgresServerTests.createDatabase()
        let a = try ClusterTests.member(database, "a", lease: lease)
        let b = try ClusterTests.member(database, "b", lease: lease, keyFrom: a)
        try await a.start()
        try await b.start()
        try a.drop("jobs.record.swift", SchedulerTests.recorder(name: "jobs.record", record: record))
        for server in [a, b] { try await server.waitForDeployment("jobs.record.swift") }
        return (a, b)
    }

    @Test func eachDueRunHappensOnExactlyOneServer() async throws {
        let record = TestEnvironment.temporaryDirectory("sched-cluster") + "/calls.jsonl"
        let (a, b) = try await Self.pair(record: record)
        defer { Task { await a.stop(); await b.stop() } }
        for index in 0..<6 {
            let through = index.isMultiple(of: 2) ? a : b
            let created = try await SchedulerTests.create(through, ["name": "job\(index)", "service": "jobs.record",
                                                                    "job_type": "interval_based", "seconds": 1])
            #expect(created.status == 201, "\(created.text)")
        }
        try await SchedulerTests.waitFor("five runs of each job") {
            let calls = SchedulerTests.calls(record)
            return (0..<6).allSatisfy { index in calls.filter { $0["job"] as? String == "job\(index)" }.count >= 5 }
        }
        let calls = SchedulerTests.calls(record)
        var seen: [String: Int] = [:]
        for call in calls { seen["\(call["job"] as? String ?? "")@\(call["scheduled_at"] as? String ?? "")", default: 0] += 1 }
        let twice = seen.filter { $0.value > 1 }
        #expect(twice.isEmpty, "each due run once in the cluster: \(twice)")
        // Both servers show the same history.
        let fromA = try await SchedulerTests.runs(a, "job0").compactMap { $0["cid"] as? String }
        let fromB = try await SchedulerTests.runs(b, "job0").compactMap { $0["cid"] as? String }
        #expect(Set(fromA.dropFirst(2)).isSubset(of: Set(fromB)), "one history in the ODB")
    }

    @Test func aServerThatDiesMidRunDoesNotBlockTheJobsNextRuns() async throws {
        let record = TestEnvironment.temporaryDirectory("sched-cluster") + "/calls.jsonl"
        let (a, b) = try await Self.pair(lease: 5, record: record)
        defer { Task { await a.stop(); await b.stop() } }
        let created = try await SchedulerTests.create(a, ["name": "hangs", "service": "jobs.record", "job_type": "interval_based",
                                                          "seconds": 1, "extra": "sleep:600000"])
        #expect(created.status == 201, "\(created.text)")
        try await SchedulerTests.waitFor("the first call") { !SchedulerTests.calls(record).isEmpty }
        let first = try #require(SchedulerTests.calls(record).first)
        let pid = try #require(first["pid"] as? Int)
        let (dead, survivor) = Int(a.process?.processIdentifier ?? 0) == pid ? (a, b) : (b, a)
        #expect(Int(dead.process?.processIdentifier ?? 0) == pid)
        // While it runs, the other server skips the job's ticks (runs never overlap).
        try await SchedulerTests.waitFor("a skipped tick") {
            try await SchedulerTests.runs(survivor, "hangs").contains { $0["status"] as? String == "skipped" }
        }
        dead.signal(SIGKILL)
        _ = await dead.waitForExit()
        let survivorPID = Int(survivor.process?.processIdentifier ?? 0)
        try await SchedulerTests.waitFor("a run on the survivor", timeout: 90) {
            SchedulerTests.calls(record).contains { $0["pid"] as? Int == survivorPID }
        }
        let runs = try await SchedulerTests.runs(survivor, "hangs")
        let cut = try #require(runs.first { $0["cid"] as? String == first["cid"] as? String }, "\(runs)")
        #expect(cut["status"] as? String == "interrupted", "\(cut)")
        if survivor === a { await a.stop() }
    }
}
