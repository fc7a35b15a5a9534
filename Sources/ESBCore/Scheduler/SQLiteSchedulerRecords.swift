import ESBStore
import Foundation
import GRDB

/// ``SchedulerRecords`` on SQLite: one server per file, so every running run is this
/// process's (or its previous life's). Writes go through one ``SQLiteGroupCommitter``: the
/// ends of many runs share a commit.
struct SQLiteSchedulerRecords: SchedulerRecords {
    let pool: DatabasePool
    let server: String
    private let committer: SQLiteGroupCommitter

    init(pool: DatabasePool, server: String) {
        self.pool = pool
        self.server = server
        committer = SQLiteGroupCommitter(pool: pool)
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
            try db.execute(sql: """
                DELETE FROM scheduler_run WHERE NOT EXISTS (
                  SELECT 1 FROM config_object o WHERE o.kind = 'scheduler' AND o.name = scheduler_run.job)
                """)
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

    static func write(_ outcome: ClaimOutcome, db: Database) throws {
        if let interrupted = outcome.interrupted {
            try db.cachedStatement(sql: """
                UPDATE scheduler_run SET status = 'interrupted', error = coalesce(error, 'the server running it stopped mid-run')
                WHERE cid = ? AND status = 'running'
                """).execute(arguments: [interrupted])
        }
        if let start = outcome.start {
            try insert(start, db: db)
            try db.cachedStatement(sql: """
                UPDATE scheduler_state SET next_run_at = ?, runs_done = ?, running_cid = ?, running_server = ?, running_since = ?
                WHERE job = ?
                """).execute(arguments: [outcome.nextRunAt, outcome.runsDone, start.cid, start.server, start.startedAt, outcome.job])
        } else {
            try db.cachedStatement(sql: """
                UPDATE scheduler_state SET next_run_at = ?, runs_done = ?,
                  running_cid = CASE WHEN ? THEN NULL ELSE running_cid END,
                  running_server = CASE WHEN ? THEN NULL ELSE running_server END,
                  running_since = CASE WHEN ? THEN NULL ELSE running_since END
                WHERE job = ?
                """).execute(arguments: [outcome.nextRunAt, outcome.runsDone, outcome.interrupted != nil, outcome.interrupted != nil,
                                 outcome.interrupted != nil, outcome.job])
        }
        if let record = outcome.record { try insert(record, db: db) }
    }

    static func insert(_ run: JobRun, db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO scheduler_run(job, cid, scheduled_at, started_at, finished_at, duration_ms, status, error, server)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [run.job, run.cid, run.scheduledAt, run.startedAt, run.finishedAt, run.durationMS,
                             run.status.rawValue, run.error, run.server])
    }

    func startManual(_ run: JobRun, busy: @escaping @Sendable (String) -> Bool) async throws -> Bool {
        try await committer.write { db in
            let previous = try String.fetchOne(db, sql: "SELECT running_cid FROM scheduler_state WHERE job = ?", arguments: [run.job])
            if let previous, busy(previous) { return false }
            try db.cachedStatement(sql: """
                UPDATE scheduler_state SET running_cid = ?, running_server = ?, running_since = ? WHERE job = ?
                """).execute(arguments: [run.cid, run.server, run.startedAt, run.job])
            guard db.changesCount == 1 else { return false }
            if let previous {
                try db.cachedStatement(sql: """
                    UPDATE scheduler_run SET status = 'interrupted', error = coalesce(error, 'its task ended without recording the end')
                    WHERE cid = ? AND status = 'running'
                    """).execute(arguments: [previous])
            }
            try Self.insert(run, db: db)
            return true
        }
    }

    func runningHere() async throws -> [(job: String, cid: String)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT job, cid FROM scheduler_run WHERE status = 'running'").map { ($0["job"], $0["cid"]) }
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
        try db.cachedStatement(sql: """
            UPDATE scheduler_run SET status = ?, error = ?, finished_at = ?, duration_ms = ? WHERE cid = ? AND status = 'running'
            """).execute(arguments: [run.status.rawValue, run.error, run.finishedAt, run.durationMS, run.cid])
        if release { try Self.release(job: run.job, cid: run.cid, db: db) }
    }

    func release(job: String, cid: String) async throws {
        try await committer.write { db in try Self.release(job: job, cid: cid, db: db) }
    }

    static func release(job: String, cid: String, db: Database) throws {
        try db.cachedStatement(sql: """
            UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL
            WHERE job = ? AND running_cid = ?
            """).execute(arguments: [job, cid])
    }

    func recover(now: Int64) async throws -> Int {
        try await committer.write { db in
            try db.cachedStatement(sql: """
                UPDATE scheduler_run SET status = 'interrupted', finished_at = ?,
                  error = 'the server stopped mid-run (a crash, a kill or a shutdown that did not wait for it)'
                WHERE status = 'running'
                """).execute(arguments: [now])
            let count = db.changesCount
            try db.execute(sql: "UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL")
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
                SELECT r.* FROM scheduler_run r JOIN (SELECT job, max(id) AS id FROM scheduler_run GROUP BY job) l ON r.id = l.id
                """)
            return Dictionary(uniqueKeysWithValues: rows.map(Self.run).map { ($0.job, $0) })
        }
    }

    func runs(job: String, limit: Int) async throws -> [JobRun] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM scheduler_run WHERE job = ? ORDER BY id DESC LIMIT ?", arguments: [job, limit])
                .map(Self.run)
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

    func prune(keep: Int) async throws -> Int {
        try await committer.write { db in
            try db.cachedStatement(sql: """
                DELETE FROM scheduler_run WHERE id IN (
                  SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY job ORDER BY id DESC) AS n FROM scheduler_run)
                  WHERE n > ?)
                """).execute(arguments: [keep])
            return db.changesCount
        }
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
