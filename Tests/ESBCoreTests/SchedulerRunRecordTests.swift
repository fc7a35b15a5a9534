import ESBStore
import Foundation
import GRDB
import Testing

@testable import ESBCore

/// A run's record, on both engines: shown while it goes, one record per run whatever ends it
/// (an end after a stop recorded it `interrupted` is dropped). On SQLite a run is written once,
/// when it ended (`v12-scheduler-runs-once`).
@Suite struct SchedulerRunRecordTests {
    typealias Records = StoreRecordsTests

    /// Job `job` (every second) on `odb`, its run due at 1000 claimed (cid `cid-JOB-1000`).
    static func claimedRun(_ odb: ODB, _ job: String) async throws -> any SchedulerRecords {
        let (records, store) = try await Records.scheduler(odb)
        try await records.sync([Records.reset(job, "k", next: 1000, body: try await Records.storeJob(store, job))])
        let claimed = try await records.claim(now: 1000, jobs: nil, orphans: [], foreignAfter: 3000, limit: 10, ends: [],
                                              Records.startAll(now: 1000))
        try #require(claimed.count == 1)
        return records
    }

    @Test(arguments: ODB.Engine.allCases)
    func aRunHasOneRecordWhateverEndsIt(engine: ODB.Engine) async throws {
        let records = try await Self.claimedRun(try await TestODB.make(engine), "once")
        // Going: listed as running, and the job's last run.
        var runs = try await records.runs(job: "once", limit: 10)
        #expect(runs.map(\.cid) == ["cid-once-1000"])
        #expect(runs.first?.status == .running && runs.first?.scheduledAt == 1000 && runs.first?.server == "a")
        #expect(try await records.lastRuns()["once"]?.status == .running)
        // Timed out: recorded while the job stays busy; a stop then records nothing more.
        let timedOut = JobRun(job: "once", cid: "cid-once-1000", scheduledAt: 1000, startedAt: 1000, finishedAt: 1900,
                              durationMS: 900, status: .timedOut, error: "slow", server: "a")
        try await records.finish([timedOut], release: false)
        #expect(try await records.states()["once"]?.runningCID == "cid-once-1000")
        #expect(try await records.runs(job: "once", limit: 10).map(\.status) == [.timedOut])
        #expect(try await records.recover(now: 2000) == 0, "a timed-out run has its record already")
        // Its service returned after the stop: no second record.
        var returned = timedOut
        (returned.status, returned.error, returned.finishedAt) = (.ok, nil, 2100)
        try await records.finish([returned], release: true)
        #expect(try await records.runs(job: "once", limit: 10).map(\.status) == [.timedOut])
        // A run cut by a stop is interrupted with its own times; its late end is dropped.
        let manual = JobRun(job: "once", cid: "manual", scheduledAt: 3000, startedAt: 3000, status: .running, server: "a")
        #expect(try await records.startManual(manual, busy: { _ in false }))
        #expect(try await records.recover(now: 3500) == 1)
        var late = manual
        (late.status, late.finishedAt, late.durationMS) = (.ok, 3600, 600)
        try await records.finish([late], release: true)
        runs = try await records.runs(job: "once", limit: 10)
        #expect(runs.map(\.cid) == ["manual", "cid-once-1000"], "newest start first")
        #expect(runs.map(\.status) == [.interrupted, .timedOut])
        #expect(runs.first?.startedAt == 3000 && runs.first?.finishedAt == 3500)
        #expect(try await records.states()["once"]?.runningCID == nil)
    }

    @Test(arguments: ODB.Engine.allCases)
    func aRunNothingHereRunsIsRecordedInterruptedWithItsOwnTimes(engine: ODB.Engine) async throws {
        let records = try await Self.claimedRun(try await TestODB.make(engine), "swept")
        #expect(try await records.runningHere().map(\.cid) == ["cid-swept-1000"])
        // What the scheduler's sweep stores: the cid with "now" times; the record keeps the run's.
        let swept = JobRun(job: "swept", cid: "cid-swept-1000", scheduledAt: 8000, startedAt: 8000, finishedAt: 8000, durationMS: nil,
                           status: .interrupted, error: "nothing on this server ran it", server: "a")
        try await records.finish([swept], release: true)
        let runs = try await records.runs(job: "swept", limit: 10)
        #expect(runs.map(\.status) == [.interrupted])
        #expect(runs.first?.scheduledAt == 1000 && runs.first?.startedAt == 1000)
        #expect(try await records.runningHere().isEmpty)
    }

    @Test(arguments: ODB.Engine.allCases)
    func runsAreListedByStartTimeWithTheRunGoingAmongThem(engine: ODB.Engine) async throws {
        let records = try await Self.claimedRun(try await TestODB.make(engine), "long")
        // The next tick finds it going: recorded skipped, later than the run it skipped for.
        let skipped = try await records.claim(now: 2000, jobs: nil, orphans: [], foreignAfter: 3000, limit: 10, ends: []) { states in
            states.map { ClaimOutcome(job: $0.job, nextRunAt: 3000, runsDone: $0.runsDone,
                                      record: JobRun(job: $0.job, cid: "skip-2000", scheduledAt: 2000, startedAt: 2000, finishedAt: 2000,
                                                     durationMS: 0, status: .skipped, error: "busy", server: "a")) }
        }
        #expect(skipped.count == 1)
        #expect(try await records.runs(job: "long", limit: 10).map(\.cid) == ["skip-2000", "cid-long-1000"])
        #expect(try await records.lastRuns()["long"]?.cid == "skip-2000")
        // It ends after the skip was recorded: still listed by when it started.
        try await records.finish([JobRun(job: "long", cid: "cid-long-1000", scheduledAt: 1000, startedAt: 1000, finishedAt: 2500,
                                         durationMS: 1500, status: .ok, server: "a")], release: true)
        #expect(try await records.runs(job: "long", limit: 10).map(\.cid) == ["skip-2000", "cid-long-1000"])
        #expect(try await records.runs(job: "long", limit: 1).map(\.cid) == ["skip-2000"])
        #expect(try await records.lastRuns()["long"]?.cid == "skip-2000", "the list's last run is the job page's")
    }

    @Test(arguments: ODB.Engine.allCases)
    func aRunCutAtShutdownKeepsHowLongItRan(engine: ODB.Engine) async throws {
        let records = try await Self.claimedRun(try await TestODB.make(engine), "cut")
        try await records.finish([JobRun(job: "cut", cid: "cid-cut-1000", scheduledAt: 1000, startedAt: 1000, finishedAt: 1700,
                                         durationMS: 700, status: .interrupted, error: "the server stopped", server: "a")], release: true)
        let run = try #require(try await records.runs(job: "cut", limit: 10).first)
        #expect(run.status == .interrupted && run.durationMS == 700 && run.finishedAt == 1700 && run.error == "the server stopped")
    }

    /// A timed-out run whose record could not be written (the server stopping) is recorded
    /// `interrupted` when its service returns, not lost.
    @Test func onSQLiteATimedOutRunWhoseRecordFailedIsRecordedAtItsRelease() async throws {
        let records = try await Self.claimedRun(try await TestODB.make(.sqlite), "t")
        try await records.release(job: "t", cid: "cid-t-1000")
        #expect(try await records.runs(job: "t", limit: 10).map(\.status) == [.interrupted])
        #expect(try await records.states()["t"]?.runningCID == nil)
    }

    /// On SQLite a run is one row, written when it ended, in a table with no index to keep up.
    @Test func onSQLiteARunIsWrittenOnceWhenItEnded() async throws {
        let odb = try await TestODB.make(.sqlite)
        let pool = odb.sqlite
        let records = try await Self.claimedRun(odb, "w")
        let rows = { try await pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM scheduler_run") ?? -1 } }
        #expect(try await rows() == 0, "a claimed run is its state row")
        try await records.finish([JobRun(job: "w", cid: "cid-w-1000", scheduledAt: 1000, startedAt: 1000, finishedAt: 1001,
                                         durationMS: 1, status: .ok, server: "a")], release: true)
        #expect(try await rows() == 1)
        let indexes = try await pool.read { db -> Int in try Row.fetchAll(db, sql: "PRAGMA index_list(scheduler_run)").count }
        #expect(indexes == 0)
        // Pruned in slices of 2,000 deletes: 2,600 rows over the newest 100.
        try await pool.write { db in
            for index in 0..<2700 {
                try db.execute(sql: """
                    INSERT INTO scheduler_run(job, cid, scheduled_at, started_at, status, server) VALUES ('w', ?, ?, ?, 'skipped', 'a')
                    """, arguments: ["s\(index)", 5000 + index, 5000 + index])
            }
        }
        #expect(try await records.prune(keep: 100) == 2601)
        #expect(try await records.runs(job: "w", limit: 200).map(\.cid) == (2600..<2700).reversed().map { "s\($0)" })
    }

    /// A server of the version before v12 stopped mid-run: its `running` record becomes
    /// `interrupted` as the ODB is migrated, once.
    @Test func runsGoingWhenAServerBeforeV12StoppedAreInterruptedByTheMigration() async throws {
        let path = TestODB.sqlitePath()
        let before = Array(ODBSchema.migrations.prefix { $0.identifier != Scheduler.runsWrittenOnce.identifier })
        let old = try ODB(path: path, schema: before)
        try await old.sqlite.write { db in
            try db.execute(sql: """
                INSERT INTO scheduler_state(job, schedule_key, anchor_at, next_run_at, runs_done, running_cid, running_server, running_since)
                VALUES ('j', 'k', 0, 5000, 1, 'c1', 'a', 1000);
                INSERT INTO scheduler_run(job, cid, scheduled_at, started_at, status, server) VALUES ('j', 'c1', 1000, 1000, 'running', 'a');
                """)
        }
        let odb = try ODB(path: path)
        let records = SQLiteSchedulerRecords(pool: odb.sqlite, server: "a")
        #expect(try await records.recover(now: 9000) == 0, "interrupted by the migration, not again")
        let runs = try await records.runs(job: "j", limit: 10)
        #expect(runs.map(\.cid) == ["c1"] && runs.map(\.status) == [.interrupted])
        #expect(try await records.states()["j"]?.runningCID == nil)
        #expect(try await records.states()["j"]?.nextRunAt == 5000, "the schedule is kept")
    }
}
