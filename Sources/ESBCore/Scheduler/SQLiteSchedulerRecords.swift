import ESBStore
import Foundation
import GRDB

/// ``SchedulerRecords`` on SQLite: one server per file, so every running run is this
/// process's (or its previous life's). Writes go through one ``SQLiteGroupCommitter``: the
/// ends of many runs share a commit.
///
/// A run is written once, when it ended (`v12-scheduler-runs-once`): while it goes it is the
/// job's state row (`running_cid`, `running_server`, `running_since`, `running_due`), which
/// the claim writes anyway, and the listings show it from there. A run cut by a crash is
/// recorded `interrupted` from that state row at the next start. The state row also says
/// whether its run has its record (`running_recorded`: a timed-out run whose service has not
/// returned), so the first record of a run is its only one, and `scheduler_run` needs no
/// index: at a thousand runs a second, each run written twice and indexed by job and cid put
/// a random index page or two per run into the WAL, most of the scheduler's CPU. Reading a
/// job's runs scans the table (the newest 100 per job are kept).
struct SQLiteSchedulerRecords: SchedulerRecords {
    let pool: DatabasePool
    let server: String
    private let committer: SQLiteGroupCommitter

    init(pool: DatabasePool, server: String) {
        self.pool = pool
        self.server = server
        committer = SQLiteGroupCommitter(pool: pool)
    }

    /// Migration `v12-scheduler-runs-once`: runs `running` in `scheduler_run` (a server of
    /// the version before, stopped mid-run) become `interrupted` as the next start would have
    /// recorded them, the state rows gain `running_due` and `running_recorded`, and
    /// `scheduler_run` loses its indexes.
    static func storeRunsOnce(_ db: Database) throws {
        try db.execute(sql: """
            UPDATE scheduler_run SET status = 'interrupted', finished_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000, error = ?
            WHERE status = 'running'
            """, arguments: [JobRun.stoppedMidRun])
        try db.execute(sql: """
            ALTER TABLE scheduler_state ADD COLUMN running_due INTEGER;
            ALTER TABLE scheduler_state ADD COLUMN running_recorded INTEGER;
            UPDATE scheduler_state SET \(notRunning);
            DROP INDEX scheduler_run_job;
            DROP INDEX scheduler_run_cid;
            DROP INDEX scheduler_run_running;
            """)
    }

    /// Migration `v11-scheduler`.
    static func createTables(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE scheduler_state (
              job TEXT PRIMARY KEY, schedule_key TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1, anchor_at INTEGER NOT NULL,
              next_run_at INTEGER,
              runs_done INTEGER NOT NULL DEFAULT 0, running_cid TEXT, running_server TEXT, running_since INTEGER);
            CREATE INDEX scheduler_state_due ON scheduler_state(next_run_at) WHERE next_run_at IS NOT NULL;
            CREATE TABLE scheduler_run (
              id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, cid TEXT NOT NULL, scheduled_at INTEGER NOT NULL,
              started_at INTEGER NOT NULL, finished_at INTEGER, duration_ms INTEGER, status TEXT NOT NULL, error TEXT,
              server TEXT NOT NULL);
            CREATE INDEX scheduler_run_job ON scheduler_run(job, id);
            CREATE INDEX scheduler_run_cid ON scheduler_run(cid);
            CREATE INDEX scheduler_run_running ON scheduler_run(status) WHERE status = 'running';
            """)
    }

    func sync(_ changes: [JobSync]) async throws {
        try await committer.write { db in
            for change in changes.sorted(by: { $0.state.job < $1.state.job }) {
                let state = change.state
                let current = "EXISTS (SELECT 1 FROM config_object WHERE kind = 'scheduler' AND name = ? AND body = ?)"
                switch change.change {
                case .reset:
                    try db.cachedStatement(sql: """
                        INSERT INTO scheduler_state(job, schedule_key, active, anchor_at, next_run_at, runs_done)
                        SELECT ?, ?, ?, ?, ?, 0 WHERE \(current)
                        ON CONFLICT(job) DO UPDATE SET schedule_key = excluded.schedule_key, active = excluded.active,
                          anchor_at = excluded.anchor_at, next_run_at = excluded.next_run_at, runs_done = 0
                        WHERE scheduler_state.schedule_key <> excluded.schedule_key
                        """).execute(arguments: [state.job, state.scheduleKey, state.active, state.anchor, state.nextRunAt, state.job, change.body])
                case .revive:
                    try db.cachedStatement(sql: """
                        UPDATE scheduler_state SET next_run_at = ?
                        WHERE job = ? AND schedule_key = ? AND active = 1 AND next_run_at IS NULL AND \(current)
                        """).execute(arguments: [state.nextRunAt, state.job, state.scheduleKey, state.job, change.body])
                case .toggle:
                    try db.cachedStatement(sql: """
                        UPDATE scheduler_state SET active = ?, next_run_at = ?
                        WHERE job = ? AND schedule_key = ? AND active <> ? AND \(current)
                        """).execute(arguments: [state.active, state.nextRunAt, state.job, state.scheduleKey, state.active, state.job, change.body])
                }
            }
            try db.execute(sql: """
                DELETE FROM scheduler_state WHERE NOT EXISTS (
                  SELECT 1 FROM config_object o WHERE o.kind = 'scheduler' AND o.name = scheduler_state.job)
                """)
            // Runs are written only for jobs with a state row: a deleted job's runs go with its
            // row, and the table (no index) is scanned only when a job was deleted.
            if db.changesCount > 0 {
                try db.execute(sql: """
                    DELETE FROM scheduler_run WHERE NOT EXISTS (
                      SELECT 1 FROM config_object o WHERE o.kind = 'scheduler' AND o.name = scheduler_run.job)
                    """)
            }
        }
    }

    func nextDue(jobs _: [String]?) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT min(next_run_at) FROM scheduler_state WHERE next_run_at IS NOT NULL")
        }
    }

    /// One server: it takes every due job.
    func claim(now: Int64, jobs _: [String]?, orphans _: [String], foreignAfter _: Int64, limit: Int, ends: [JobRun],
               _ plan: @escaping @Sendable ([JobState]) -> [ClaimOutcome]) async throws -> [ClaimOutcome] {
        try await committer.write { db in
            for run in ends { try Self.finish(run, release: true, db: db) }
            let due = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM scheduler_state WHERE next_run_at <= ? ORDER BY next_run_at LIMIT ?
                """), arguments: [now, limit]).map(Self.state)
            guard !due.isEmpty else { return [] }
            let outcomes = plan(due)
            for outcome in outcomes { try Self.write(outcome, db: db) }
            return outcomes
        }
    }

    /// A state row's columns for a run going: set (to its cid, server, start and due time,
    /// no record yet), and cleared.
    static let running = "running_cid = ?, running_server = ?, running_since = ?, running_due = ?, running_recorded = NULL"
    static let notRunning = "running_cid = NULL, running_server = NULL, running_since = NULL, running_due = NULL, running_recorded = NULL"
    /// How runs are listed, kept and pruned: newest start first (a run is stored when it
    /// ended, after the ticks it made skip were).
    static let newestFirst = "ORDER BY started_at DESC, id DESC"

    static func write(_ outcome: ClaimOutcome, db: Database) throws {
        if let interrupted = outcome.interrupted {
            try recordInterrupted(job: outcome.job, cid: interrupted, finishedAt: nil, durationMS: nil,
                                  error: "the server running it stopped mid-run", db: db)
        }
        if let start = outcome.start {
            try db.cachedStatement(sql: "UPDATE scheduler_state SET next_run_at = ?, runs_done = ?, \(running) WHERE job = ?")
                .execute(arguments: [outcome.nextRunAt, outcome.runsDone] + runningValues(start) + [outcome.job])
        } else if outcome.interrupted != nil {
            try db.cachedStatement(sql: "UPDATE scheduler_state SET next_run_at = ?, runs_done = ?, \(notRunning) WHERE job = ?")
                .execute(arguments: [outcome.nextRunAt, outcome.runsDone, outcome.job])
        } else {
            try db.cachedStatement(sql: "UPDATE scheduler_state SET next_run_at = ?, runs_done = ? WHERE job = ?")
                .execute(arguments: [outcome.nextRunAt, outcome.runsDone, outcome.job])
        }
        if let record = outcome.record { try insert(record, db: db) }
    }

    /// Stores a run record that no state row stands for (a skipped tick).
    static func insert(_ run: JobRun, db: Database) throws {
        try db.cachedStatement(sql: "INSERT INTO scheduler_run(\(JobRun.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .execute(arguments: values(run))
    }

    /// A run's values in ``JobRun/columns``'s order.
    static func values(_ run: JobRun) -> StatementArguments {
        [run.job, run.cid, run.scheduledAt, run.startedAt, run.finishedAt, run.durationMS, run.status.rawValue, run.error, run.server]
    }

    /// The values of ``running`` for a run that starts.
    static func runningValues(_ run: JobRun) -> StatementArguments {
        [run.cid, run.server, run.startedAt, run.scheduledAt]
    }

    /// Stores the end of the job's going run, if its state row still stands for it without a
    /// record (the first record of a run wins: an `interrupted` written at a shutdown is not
    /// followed by a late end).
    static func insertEnd(_ run: JobRun, db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO scheduler_run(\(JobRun.columns)) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM scheduler_state
            WHERE job = ? AND running_cid = ? AND running_recorded IS NULL
            """).execute(arguments: values(run) + [run.job, run.cid])
    }

    /// Records the run the job's state row says is going (of `job` and `cid`, or of every job
    /// when nil) as `interrupted`, with the due and start times the row keeps, unless it has a
    /// record already (a timed-out run waiting for its service). The state row is left as it
    /// is. Returns how many were recorded.
    @discardableResult
    static func recordInterrupted(job: String?, cid: String?, finishedAt: Int64?, durationMS: Int64?, error: String,
                                  db: Database) throws -> Int {
        let select = """
            INSERT INTO scheduler_run(\(JobRun.columns))
            SELECT s.job, s.running_cid, coalesce(s.running_due, s.running_since), s.running_since, ?, ?, 'interrupted', ?,
              s.running_server
            FROM scheduler_state s WHERE s.running_cid IS NOT NULL AND s.running_recorded IS NULL
            """
        if let job, let cid {
            // One job: found by its key, not by a scan of every state row.
            try db.cachedStatement(sql: select + " AND s.job = ? AND s.running_cid = ?")
                .execute(arguments: [finishedAt, durationMS, error, job, cid])
        } else {
            try db.cachedStatement(sql: select).execute(arguments: [finishedAt, durationMS, error])
        }
        return db.changesCount
    }

    /// The run going of each job that has one and no record of it yet, as the listings show it.
    static func goingRuns(_ db: Database, job: String?) throws -> [String: JobRun] {
        let rows = try Row.fetchAll(db, sql: """
            SELECT s.job, s.running_cid, s.running_due, s.running_since, s.running_server FROM scheduler_state s
            WHERE s.running_cid IS NOT NULL AND s.running_recorded IS NULL AND (? IS NULL OR s.job = ?)
            """, arguments: [job, job])
        return Dictionary(uniqueKeysWithValues: rows.map { row -> (String, JobRun) in
            let since: Int64 = row["running_since"] ?? 0
            return (row["job"], JobRun(job: row["job"], cid: row["running_cid"], scheduledAt: row["running_due"] ?? since,
                                       startedAt: since, status: .running, server: row["running_server"] ?? ""))
        })
    }

    func startManual(_ run: JobRun, busy: @escaping @Sendable (String) -> Bool) async throws -> Bool {
        try await committer.write { db in
            let previous = try String.fetchOne(db, sql: "SELECT running_cid FROM scheduler_state WHERE job = ?", arguments: [run.job])
            if let previous, busy(previous) { return false }
            if let previous {
                try Self.recordInterrupted(job: run.job, cid: previous, finishedAt: nil, durationMS: nil,
                                           error: "its task ended without recording the end", db: db)
            }
            try db.cachedStatement(sql: "UPDATE scheduler_state SET \(Self.running) WHERE job = ?")
                .execute(arguments: Self.runningValues(run) + [run.job])
            return db.changesCount == 1
        }
    }

    func runningHere() async throws -> [(job: String, cid: String)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT job, running_cid FROM scheduler_state WHERE running_cid IS NOT NULL").map {
                ($0["job"], $0["running_cid"])
            }
        }
    }

    /// One server per file: no one else.
    func servicesDeployedElsewhere() async throws -> Set<String> { [] }

    func finish(_ runs: [JobRun], release: Bool) async throws {
        try await committer.write { db in
            for run in runs { try Self.finish(run, release: release, db: db) }
        }
    }

    static func finish(_ run: JobRun, release: Bool, db: Database) throws {
        if run.status == .interrupted {
            // Cut at a stop, or found by the sweep with "now" for times: the record keeps the
            // due and start times its state row has.
            try recordInterrupted(job: run.job, cid: run.cid, finishedAt: run.finishedAt, durationMS: run.durationMS,
                                  error: run.error ?? "", db: db)
        } else {
            try insertEnd(run, db: db)
        }
        if release {
            try Self.release(job: run.job, cid: run.cid, db: db)
        } else {
            try db.cachedStatement(sql: "UPDATE scheduler_state SET running_recorded = 1 WHERE job = ? AND running_cid = ?")
                .execute(arguments: [run.job, run.cid])
        }
    }

    /// After a timed-out run's service returned. Its record was written then, unless that
    /// write failed (at a shutdown): it is recorded `interrupted` now rather than not at all.
    func release(job: String, cid: String) async throws {
        let now = JobDefinition.now()
        try await committer.write { db in
            try Self.recordInterrupted(job: job, cid: cid, finishedAt: now, durationMS: nil,
                                       error: "its end could not be recorded (the server was stopping)", db: db)
            try Self.release(job: job, cid: cid, db: db)
        }
    }

    static func release(job: String, cid: String, db: Database) throws {
        try db.cachedStatement(sql: "UPDATE scheduler_state SET \(notRunning) WHERE job = ? AND running_cid = ?")
            .execute(arguments: [job, cid])
    }

    func recover(now: Int64) async throws -> Int {
        try await committer.write { db in
            let count = try Self.recordInterrupted(
                job: nil, cid: nil, finishedAt: now, durationMS: nil,
                error: JobRun.stoppedMidRun, db: db)
            try db.execute(sql: "UPDATE scheduler_state SET \(Self.notRunning) WHERE running_cid IS NOT NULL")
            return count
        }
    }

    /// One server per file: nobody else's runs to take over.
    func takeOver(now _: Int64, leaseMS _: Int64) async throws -> Int { 0 }

    func states() async throws -> [String: JobState] {
        try await pool.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT * FROM scheduler_state").map(Self.state).map { ($0.job, $0) })
        }
    }

    func lastRuns() async throws -> [String: JobRun] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY job \(Self.newestFirst)) AS n FROM scheduler_run) WHERE n = 1
                """)
            let ended = Dictionary(uniqueKeysWithValues: rows.map(Self.run).map { ($0.job, $0) })
            return ended.merging(try Self.goingRuns(db, job: nil)) { ended, going in going.startedAt >= ended.startedAt ? going : ended }
        }
    }

    func runs(job: String, limit: Int) async throws -> [JobRun] {
        try await pool.read { db in
            let ended = try Row.fetchAll(db, sql: "SELECT * FROM scheduler_run WHERE job = ? \(Self.newestFirst) LIMIT ?",
                                         arguments: [job, limit]).map(Self.run)
            guard let going = try Self.goingRuns(db, job: job)[job] else { return ended }
            let later = ended.prefix { $0.startedAt > going.startedAt }
            return Array((later + [going] + ended.dropFirst(later.count)).prefix(limit))
        }
    }

    func insertCopied(_ states: [JobState]) async throws {
        try await committer.write { db in
            for state in states {
                try db.cachedStatement(sql: """
                    INSERT INTO scheduler_state(job, schedule_key, active, anchor_at, next_run_at, runs_done) VALUES (?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [state.job, state.scheduleKey, state.active, state.anchor, state.nextRunAt, state.runsDone])
            }
        }
    }

    /// The runs to delete are found on a reader (a sort of the whole table), so the writer,
    /// which claims and records runs, only deletes rows by id.
    func prune(keep: Int) async throws -> Int {
        let ids = try await pool.read { db in
            try Int64.fetchAll(db, sql: """
                SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY job \(Self.newestFirst)) AS n FROM scheduler_run) WHERE n > ?
                """, arguments: [keep])
        }
        var deleted = 0
        // In slices: claims wait for no long transaction.
        for start in stride(from: 0, to: ids.count, by: 2000) {
            let slice = ids[start..<min(ids.count, start + 2000)]
            deleted += try await committer.write { db in
                let delete = try db.cachedStatement(sql: "DELETE FROM scheduler_run WHERE id = ?")
                var count = 0
                for id in slice {
                    try delete.execute(arguments: [id])
                    count += db.changesCount
                }
                return count
            }
        }
        return deleted
    }

    static func state(_ row: Row) -> JobState {
        JobState(job: row["job"], scheduleKey: row["schedule_key"], active: row["active"], anchor: row["anchor_at"],
                 nextRunAt: row["next_run_at"],
                 runsDone: row["runs_done"], runningCID: row["running_cid"], runningServer: row["running_server"],
                 runningSince: row["running_since"])
    }

    static func run(_ row: Row) -> JobRun {
        JobRun(job: row["job"], cid: row["cid"], scheduledAt: row["scheduled_at"], startedAt: row["started_at"],
               finishedAt: row["finished_at"], durationMS: row["duration_ms"],
               status: JobRun.Status(rawValue: row["status"]) ?? .failed, error: row["error"], server: row["server"])
    }
}
