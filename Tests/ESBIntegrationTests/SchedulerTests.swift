import Foundation
import Testing

/// Scheduled jobs in a real esbd (INTERFACES.md §11): a dropped service records each call it
/// gets in a file; the API, the CLI, enmasse and the dashboard manage the jobs.
@Suite(.serialized) struct SchedulerTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// A service that records each call as a JSON line in `record`, then acts on its payload:
    /// `fail` throws, `sleep:N` sleeps N ms, `block:N` blocks its thread N ms (deaf to cancellation).
    static func recorder(name: String, record: String) -> String {
        """
        import ESBService
        import Foundation
        import Glibc

        struct ScheduledRecorder: Service {
            static let name = "\(name)"
            struct Failed: Error, CustomStringConvertible { var description: String { "refused on purpose" } }
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let line: [String: Any] = [
                    "cid": request.cid, "channel": request.channel, "payload": request.text,
                    "job": request.headers["x-esb-job"] ?? "", "scheduled_at": request.headers["x-esb-scheduled-at"] ?? "",
                    "at": Date().timeIntervalSince1970, "pid": Int(getpid()),
                ]
                var data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
                data.append(10)
                let fd = open("\(record)", O_WRONLY | O_APPEND | O_CREAT, 0o644)
                _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
                let text = request.text
                if text.hasPrefix("sleep:"), let ms = Int(text.dropFirst(6)) { try await Task.sleep(for: .milliseconds(ms)) }
                if text.hasPrefix("block:"), let ms = Int(text.dropFirst(6)) { usleep(UInt32(ms) * 1000) }
                if text == "fail" { throw Failed() }
                return .text("done")
            }
        }
        """
    }

    /// The calls the recorder saw: the JSON-lines reader of the AMQP channel tests.
    static func calls(_ path: String) -> [[String: Any]] { AMQPChannelTests.records(path) }

    static func waitFor(_ what: String, timeout: Double = 60, _ condition: () async throws -> Bool) async throws {
        try await AMQPChannelTests.waitFor(what, timeout: timeout, condition)
    }

    /// A started server with the recorder deployed as `service` (unless `deploy` is false).
    func server(service: String = "jobs.record", record: String, deploy: Bool = true) async throws -> TestServer {
        let server = try TestServer()
        try await server.start()
        if deploy {
            try server.drop("\(service).swift", Self.recorder(name: service, record: record))
            try await server.waitForDeployment("\(service).swift")
        }
        return server
    }

    static func create(_ server: TestServer, _ job: [String: Any]) async throws -> TestServer.Reply {
        try await server.request("POST", "/esb/api/scheduler", body: try JSONSerialization.data(withJSONObject: job),
                                 credentials: server.admin)
    }

    static func runs(_ server: TestServer, _ job: String) async throws -> [[String: Any]] {
        let reply = try await server.request("GET", "/esb/api/scheduler/\(job)/runs", credentials: server.admin)
        guard reply.status == 200, let runs = try JSONSerialization.jsonObject(with: reply.body) as? [[String: Any]] else {
            throw TestFailure("runs of \(job): \(reply.status) \(reply.text)")
        }
        return runs
    }

    static func job(_ server: TestServer, _ name: String) async throws -> [String: Any] {
        let reply = try await server.request("GET", "/esb/api/scheduler/\(name)", credentials: server.admin)
        return try #require(reply.json, "\(reply.status) \(reply.text)")
    }

    @Test func anIntervalJobInvokesItsServiceWithExtraAndHeadersAndEveryRunIsRecorded() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        let created = try await Self.create(server, ["name": "poll", "service": "jobs.record", "job_type": "interval_based",
                                                     "seconds": 1, "extra": "hello"])
        #expect(created.status == 201, "\(created.text)")
        #expect(created.json?["next_run_at"] is String, "\(created.text)")
        try await Self.waitFor("three calls") { Self.calls(record).count >= 3 }
        let calls = Self.calls(record)
        for call in calls {
            #expect(call["channel"] as? String == "scheduler")
            #expect(call["payload"] as? String == "hello", "extra is the payload")
            #expect(call["job"] as? String == "poll", "x-esb-job")
        }
        let scheduled = calls.compactMap { $0["scheduled_at"] as? String }
        #expect(Set(scheduled).count == calls.count, "one call per scheduled time: \(scheduled)")
        #expect(scheduled.allSatisfy { $0.hasSuffix("Z") && $0.contains("T") }, "x-esb-scheduled-at is ISO 8601: \(scheduled)")

        try await Self.waitFor("the runs recorded ok") { try await Self.runs(server, "poll").filter { $0["status"] as? String == "ok" }.count >= 3 }
        let runs = try await Self.runs(server, "poll")
        let finished = runs.filter { $0["status"] as? String == "ok" }
        #expect(Set(finished.compactMap { $0["cid"] as? String }).isSubset(of: Set(calls.compactMap { $0["cid"] as? String })),
                "each run's cid is the cid the service saw")
        let started = runs.compactMap { $0["started_at"] as? String }
        #expect(started == started.sorted(by: >), "newest first")
        for run in finished {
            #expect(run["server"] as? String == "test-server")
            #expect(run["duration_ms"] is Int)
            #expect(run["scheduled_at"] is String)
            #expect(run["error"] is NSNull)
        }
        let list = try await server.request("GET", "/esb/api/scheduler", credentials: server.admin)
        let jobs = try #require(try JSONSerialization.jsonObject(with: list.body) as? [[String: Any]])
        #expect(jobs.first?["name"] as? String == "poll")
        #expect(jobs.first?["next_run_at"] is String)
        #expect((jobs.first?["last_run"] as? [String: Any])?["status"] is String)
        let metrics = try await server.request("GET", "/metrics")
        #expect(metrics.text.contains("esb_scheduler_runs_total"), "runs are counted")
        #expect(metrics.text.contains("esb_scheduler_start_delay_seconds"), "start delay is measured")

        // Paused: no next run, no calls; resumed: it runs again.
        let paused = try await server.request("PUT", "/esb/api/scheduler/poll", body: json(["is_active": false]), credentials: server.admin)
        #expect(paused.status == 200)
        #expect(paused.json?["next_run_at"] is NSNull, "\(paused.text)")
        try await Task.sleep(for: .milliseconds(300))
        let before = Self.calls(record).count
        try await Task.sleep(for: .seconds(2))
        #expect(Self.calls(record).count == before, "a paused job does not run")
        let resumed = try await server.request("PUT", "/esb/api/scheduler/poll", body: json(["is_active": true]), credentials: server.admin)
        #expect(resumed.json?["next_run_at"] is String)
        try await Self.waitFor("a call after resuming") { Self.calls(record).count > before }

        // Deleted: gone with its runs.
        #expect(try await server.request("DELETE", "/esb/api/scheduler/poll", credentials: server.admin).status == 204)
        #expect(try await server.request("GET", "/esb/api/scheduler/poll/runs", credentials: server.admin).status == 404)
    }

    @Test func badDefinitionsAre422NamingTheField() async throws {
        let server = try await server(record: "/dev/null", deploy: false)
        defer { Task { await server.stop() } }
        let cases: [([String: Any], String)] = [
            (["job_type": "cron_style", "cron_definition": "61 * * * *"], "cron_definition"),
            (["job_type": "cron_style", "cron_definition": "0 0 30 2 *"], "cron_definition"),
            (["job_type": "cron_style"], "cron_definition"),
            (["job_type": "interval_based"], "seconds"),
            (["job_type": "interval_based", "minutes": -1], "minutes"),
            (["job_type": "cron_style", "cron_definition": "@daily", "timezone": "Europe/Atlantis"], "timezone"),
            (["job_type": "one_time"], "start_date"),
            (["job_type": "one_time", "start_date": "tomorrow"], "start_date"),
            (["job_type": "hourly", "seconds": 1], "job_type"),
            (["job_type": "interval_based", "seconds": 1, "misfire": "burst"], "misfire"),
            (["job_type": "interval_based", "seconds": 1, "max_run_seconds": -5], "max_run_seconds"),
            (["job_type": "interval_based", "seconds": 1, "colour": "red"], "colour"),
        ]
        for (fields, field) in cases {
            let reply = try await Self.create(server, ["name": "bad", "service": "s"].merging(fields) { $1 })
            #expect(reply.status == 422, "\(fields): \(reply.status) \(reply.text)")
            #expect((reply.json?["error"] as? [String: Any])?["field"] as? String == field, "\(fields): \(reply.text)")
            #expect(reply.text.contains(field), "the message names \(field): \(reply.text)")
        }
        let list = try await server.request("GET", "/esb/api/scheduler", credentials: server.admin)
        #expect(list.text == "[]", "nothing was created")
    }

    @Test func aJobWhoseServiceIsNotDeployedRecordsAFailedRunEachTickAndKeepsItsSchedule() async throws {
        let server = try await server(record: "/dev/null", deploy: false)
        defer { Task { await server.stop() } }
        let created = try await Self.create(server, ["name": "orphan", "service": "not.deployed", "job_type": "interval_based", "seconds": 1])
        #expect(created.status == 201, "accepted: the service may be deployed later")
        try await Self.waitFor("two failed runs") { try await Self.runs(server, "orphan").filter { $0["status"] as? String == "failed" }.count >= 2 }
        let failed = try await Self.runs(server, "orphan").first { $0["status"] as? String == "failed" }
        #expect((failed?["error"] as? String)?.contains("not.deployed") == true, "\(String(describing: failed))")
        #expect(try await Self.job(server, "orphan")["next_run_at"] is String, "the schedule goes on")
    }

    @Test func overlappingTicksAreSkippedAHungRunTimesOutAndExecuteRunsNow() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        #expect(try await Self.create(server, ["name": "slow", "service": "jobs.record", "job_type": "interval_based", "seconds": 1,
                                               "extra": "sleep:3500"]).status == 201)
        #expect(try await Self.create(server, ["name": "hung", "service": "jobs.record", "job_type": "interval_based", "hours": 1,
                                               "extra": "sleep:600000", "max_run_seconds": 3]).status == 201)
        try await Self.waitFor("a skipped tick of the slow job") {
            try await Self.runs(server, "slow").contains { $0["status"] as? String == "skipped" }
        }
        let skipped = try #require(try await Self.runs(server, "slow").first { $0["status"] as? String == "skipped" })
        #expect((skipped["error"] as? String)?.contains("still going") == true, "\(skipped)")
        // Never two calls of the slow job at once: each starts after the previous one ended.
        try await Self.waitFor("two slow calls") { Self.calls(record).filter { $0["job"] as? String == "slow" }.count >= 2 }
        let starts = Self.calls(record).filter { $0["job"] as? String == "slow" }.compactMap { $0["at"] as? Double }.sorted()
        #expect(zip(starts, starts.dropFirst()).allSatisfy { $1 - $0 >= 3.4 }, "runs of one job do not overlap: \(starts)")

        // The hung job ran at once (no start_date: from its creation) and is cut at 3 s.
        try await Self.waitFor("the hung run timed out") {
            try await Self.runs(server, "hung").contains { $0["status"] as? String == "timed_out" }
        }
        let timedOut = try #require(try await Self.runs(server, "hung").first)
        #expect((timedOut["error"] as? String)?.contains("max_run_seconds") == true, "\(timedOut)")

        // Run now: 202 with the cid the service sees; 409 while it is still going.
        let hung = try await server.request("POST", "/esb/api/scheduler/hung/execute", credentials: server.admin)
        #expect(hung.status == 202, "\(hung.text)")
        let cid = try #require(hung.json?["cid"] as? String)
        try await Self.waitFor("the run-now call") { Self.calls(record).contains { $0["cid"] as? String == cid } }
        let again = try await server.request("POST", "/esb/api/scheduler/hung/execute", credentials: server.admin)
        #expect(again.status == 409, "\(again.text)")
        #expect(try await server.request("POST", "/esb/api/scheduler/nope/execute", credentials: server.admin).status == 404)
    }

    @Test func oneTimeAndCronJobsRunWhenDueAndPausingKeepsTheRepeatsCount() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        let at = Date().addingTimeInterval(2)
        let start = Self.iso(at)
        #expect(try await Self.create(server, ["name": "once", "service": "jobs.record", "job_type": "one_time",
                                               "start_date": start]).status == 201)
        try await Self.waitFor("the one-time run") { Self.calls(record).contains { $0["job"] as? String == "once" } }
        let once = try #require(Self.calls(record).first { $0["job"] as? String == "once" })
        #expect((once["scheduled_at"] as? String)?.prefix(19) == start.prefix(19), "\(once)")
        #expect((once["at"] as? Double ?? 0) >= at.timeIntervalSince1970 - 0.05, "not before its time")
        try await Self.waitFor("the run recorded") { try await Self.runs(server, "once").first?["status"] as? String == "ok" }
        #expect(try await Self.job(server, "once")["next_run_at"] is NSNull, "a one-time job runs once")

        // A cron job's next run is the next matching minute in its zone.
        #expect(try await Self.create(server, ["name": "cron", "service": "jobs.record", "job_type": "cron_style",
                                               "cron_definition": "*/5 * * * *", "timezone": "Asia/Kolkata"]).status == 201)
        let next = try #require(try await Self.job(server, "cron")["next_run_at"] as? String)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let nextDate = try #require(formatter.date(from: next))
        #expect(nextDate > Date() && nextDate < Date().addingTimeInterval(301))
        // Kolkata is UTC+05:30: every fifth local minute is a minute ending in 0 or 5 in UTC too.
        #expect(Int(nextDate.timeIntervalSince1970) % 300 == 0, "\(next)")

        // repeats counts runs in all: a pause and a resume do not start the count again.
        #expect(try await Self.create(server, ["name": "thrice", "service": "jobs.record", "job_type": "interval_based",
                                               "seconds": 1, "repeats": 3]).status == 201)
        try await Self.waitFor("a first run") { Self.calls(record).contains { $0["job"] as? String == "thrice" } }
        _ = try await server.request("PUT", "/esb/api/scheduler/thrice", body: json(["is_active": false]), credentials: server.admin)
        _ = try await server.request("PUT", "/esb/api/scheduler/thrice", body: json(["is_active": true]), credentials: server.admin)
        try await Self.waitFor("the job done") { try await Self.job(server, "thrice")["next_run_at"] is NSNull }
        try await Task.sleep(for: .seconds(2))
        #expect(Self.calls(record).filter { $0["job"] as? String == "thrice" }.count == 3, "three runs in all")
    }

    @Test func aServiceDeafToCancellationKeepsItsJobBusyPastMaxRunSeconds() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        #expect(try await Self.create(server, ["name": "deaf", "service": "jobs.record", "job_type": "interval_based", "seconds": 1,
                                               "extra": "block:3000", "max_run_seconds": 1]).status == 201)
        try await Self.waitFor("two calls") { Self.calls(record).filter { $0["job"] as? String == "deaf" }.count >= 2 }
        let starts = Self.calls(record).filter { $0["job"] as? String == "deaf" }.compactMap { $0["at"] as? Double }.sorted()
        #expect(zip(starts, starts.dropFirst()).allSatisfy { $1 - $0 >= 2.9 }, "no second call while the first still blocks: \(starts)")
        let runs = try await Self.runs(server, "deaf")
        #expect(runs.contains { $0["status"] as? String == "timed_out" }, "\(runs)")
        #expect(runs.contains { $0["status"] as? String == "skipped" }, "ticks while it blocks are skipped: \(runs)")
    }

    @Test func nextRunsSurviveAKillAMissedRunRunsOnceOrIsSkippedAndACutRunIsInterrupted() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        for (name, misfire, extra) in [("catchup", "run_once", "x"), ("skipper", "skip", "x"), ("cut", "run_once", "sleep:600000")] {
            let reply = try await Self.create(server, ["name": name, "service": "jobs.record", "job_type": "interval_based", "seconds": 2,
                                                       "misfire": misfire, "extra": extra])
            #expect(reply.status == 201, "\(reply.text)")
        }
        try await Self.waitFor("each job called once") {
            Set(Self.calls(record).compactMap { $0["job"] as? String }) == ["catchup", "skipper", "cut"]
        }
        server.signal(SIGKILL)
        _ = await server.waitForExit()
        let before = Date()
        try await Task.sleep(for: .seconds(9))  // four or so runs of each missed
        let callsBefore = Self.calls(record).count
        try await server.start()
        try await server.waitForDeployment("jobs.record.swift")

        try await Self.waitFor("the cut run recorded interrupted") {
            try await Self.runs(server, "cut").contains { $0["status"] as? String == "interrupted" }
        }
        try await Self.waitFor("a skipped run of the skip job") {
            try await Self.runs(server, "skipper").contains { $0["status"] as? String == "skipped" }
        }
        let missed = try #require(try await Self.runs(server, "skipper").first { $0["status"] as? String == "skipped" })
        #expect((missed["error"] as? String)?.contains("missed") == true, "\(missed)")
        try await Self.waitFor("calls after the restart") { Self.calls(record).count > callsBefore + 2 }
        // The catch-up job ran once for everything it missed: one call scheduled before the
        // restart, then calls on its regular times.
        let after = Self.calls(record).dropFirst(callsBefore).filter { $0["job"] as? String == "catchup" }
        let late = after.compactMap { $0["scheduled_at"] as? String }.filter { ($0 < Self.iso(before.addingTimeInterval(7))) }
        #expect(late.count == 1, "one catch-up run, no burst: \(after)")
        let skipperCalls = Self.calls(record).dropFirst(callsBefore).filter { $0["job"] as? String == "skipper" }
        #expect(skipperCalls.allSatisfy { ($0["scheduled_at"] as? String ?? "") >= Self.iso(before.addingTimeInterval(8)) },
                "misfire skip waits for the next time: \(skipperCalls)")
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    @Test func aZatoEnmasseFileImportsAsIsAndTheCLIManagesJobs() async throws {
        let record = TestEnvironment.temporaryDirectory("sched") + "/calls.jsonl"
        let server = try await server(record: record)
        defer { Task { await server.stop() } }
        let file = server.directory + "/zato.yaml"
        try """
            scheduler:

              - name: enmasse.scheduler.1
                service: jobs.record
                job_type: interval_based
                start_date: '2025-01-11 11:23:52'
                seconds: 2
                is_active: True

              - name: enmasse.scheduler.repeats.1
                service: jobs.record
                job_type: interval_based
                start_date: '2099-03-10 12:00:00'
                minutes: 30
                repeats: 5

              - name: enmasse.scheduler.extra_list.1
                service: jobs.record
                job_type: one_time
                start_date: '2099-06-15 08:00:00'
                extra:
                  - key1=value1
                  - key2=value2

              - name: enmasse.scheduler.cron.1
                service: jobs.record
                job_type: cron_style
                cron_definition: '*/5 * * * mon-fri'
                timezone: Europe/Berlin
                repeats: ''
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let imported = try await server.esb(["enmasse", "import", file])
        #expect(imported.status == 0, "\(imported.stdout) \(imported.stderr)")
        let listed = try await server.esb(["scheduler", "list"])
        #expect(listed.status == 0)
        for name in ["enmasse.scheduler.1", "enmasse.scheduler.repeats.1", "enmasse.scheduler.extra_list.1", "enmasse.scheduler.cron.1"] {
            #expect(listed.stdout.contains(name), "\(listed.stdout)")
        }
        let extra = try await Self.job(server, "enmasse.scheduler.extra_list.1")
        #expect(extra["extra"] as? String == "key1=value1\nkey2=value2", "a list of lines is one text")
        #expect(extra["next_run_at"] as? String == "2099-06-15T08:00:00.000Z")
        let cron = try await Self.job(server, "enmasse.scheduler.cron.1")
        #expect(cron["repeats"] is NSNull)
        try await Self.waitFor("the imported interval job runs") {
            Self.calls(record).contains { $0["job"] as? String == "enmasse.scheduler.1" }
        }
        // The same file again changes nothing (no restart of the schedules).
        let next = try await Self.job(server, "enmasse.scheduler.repeats.1")["next_run_at"] as? String
        #expect(next == "2099-03-10T12:00:00.000Z")
        #expect(try await server.esb(["enmasse", "import", "--replace", file]).status == 0)
        #expect(try await Self.job(server, "enmasse.scheduler.repeats.1")["next_run_at"] as? String == next)
        let exported = try await server.esb(["enmasse", "export"])
        #expect(exported.stdout.contains("scheduler:"), "\(exported.stdout)")

        // The CLI: create, get, edit, execute, runs, delete.
        let made = try await server.esb(["scheduler", "create", "nightly", "service=jobs.record", "job_type=cron_style",
                                         "cron_definition=30 2 * * *", "timezone=America/New_York", "extra=42"])
        #expect(made.status == 0, "\(made.stdout) \(made.stderr)")
        #expect(try await Self.job(server, "nightly")["extra"] as? String == "42")
        let bad = try await server.esb(["scheduler", "create", "broken", "service=jobs.record", "job_type=cron_style",
                                        "cron_definition=99 * * * *"])
        #expect(bad.status != 0)
        #expect((bad.stdout + bad.stderr).contains("cron_definition"), "\(bad.stdout) \(bad.stderr)")
        #expect(try await server.esb(["scheduler", "edit", "nightly", "is_active=false"]).status == 0)
        let executed = try await server.esb(["scheduler", "execute", "nightly"])
        #expect(executed.status == 0, "\(executed.stderr)")
        try await Self.waitFor("the nightly run") { try await Self.runs(server, "nightly").first?["status"] as? String == "ok" }
        let runs = try await server.esb(["scheduler", "runs", "nightly"])
        #expect(runs.stdout.contains("\"ok\""), "\(runs.stdout)")
        #expect(try await server.esb(["scheduler", "delete", "nightly"]).status == 0)

        // The dashboard page: jobs with next run and last result, and a job's runs.
        let page = try await server.dashboardPage("/esb/dashboard/objects/scheduler")
        #expect(page.contains("enmasse.scheduler.1") && page.contains("next run"), "\(page.prefix(400))")
        let jobPage = try await server.dashboardPage("/esb/dashboard/objects/scheduler/enmasse.scheduler.1")
        #expect(jobPage.contains("Run now") && jobPage.contains("id=\"runs\"") && jobPage.contains("Pause"))
        // Run now: a redirect back to the job (a reload does not run it again), and a run.
        let jobPath = "/esb/dashboard/objects/scheduler/enmasse.scheduler.repeats.1"
        let runNow = try await server.dashboardPost(jobPath + "/execute", from: jobPath)
        #expect(runNow.status == 302 && runNow.location.contains("notice="), "\(runNow)")
        try await Self.waitFor("the run started from the dashboard") {
            Self.calls(record).contains { $0["job"] as? String == "enmasse.scheduler.repeats.1" }
        }
        // Pause, then resume.
        let pause = try await server.dashboardPost(jobPath + "/active", from: jobPath, fields: ["is_active": "false"])
        #expect(pause.status == 302, "\(pause)")
        #expect(try await Self.job(server, "enmasse.scheduler.repeats.1")["is_active"] as? Bool == false)
        _ = try await server.dashboardPost(jobPath + "/active", from: jobPath, fields: ["is_active": "true"])
        #expect(try await Self.job(server, "enmasse.scheduler.repeats.1")["is_active"] as? Bool == true)
        #expect(try await Self.job(server, "enmasse.scheduler.repeats.1")["next_run_at"] as? String == "2099-03-10T12:00:00.000Z")
    }
}
