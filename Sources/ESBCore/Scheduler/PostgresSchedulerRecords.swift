import ESBStore
import Foundation
import PostgresNIO

/// ``SchedulerRecords`` on PostgreSQL, shared by the servers of a cluster. A due run is
/// claimed by locking the job's state row (`FOR UPDATE SKIP LOCKED`: a server never waits
/// for another's claim) and moving its next run time on in the same transaction: every due
/// run happens on exactly one server. A running run belongs to its server while that
/// server's heartbeat in `esb_server` is younger than the lease.
struct PostgresSchedulerRecords: SchedulerRecords {
    let odb: PostgresODB
    let server: String
    let leaseMS: Int64

    /// Migration `v11-scheduler`.
    static let createTables = [
        """
        CREATE TABLE scheduler_state (
          job text PRIMARY KEY, schedule_key text NOT NULL, active boolean NOT NULL DEFAULT true, anchor_at bigint NOT NULL,
          next_run_at bigint,
          runs_done bigint NOT NULL DEFAULT 0, running_cid text, running_server text, running_since bigint)
        """,
        "CREATE INDEX scheduler_state_due ON scheduler_state(next_run_at) WHERE next_run_at IS NOT NULL",
        """
        CREATE TABLE scheduler_run (
          id bigserial PRIMARY KEY, job text NOT NULL, cid text NOT NULL, scheduled_at bigint NOT NULL,
          started_at bigint NOT NULL, finished_at bigint, duration_ms bigint, status text NOT NULL, error text,
          server text NOT NULL)
        """,
        "CREATE INDEX scheduler_run_job ON scheduler_run(job, id)",
        "CREATE INDEX scheduler_run_cid ON scheduler_run(cid)",
        "CREATE INDEX scheduler_run_running ON scheduler_run(status) WHERE status = 'running'",
    ]

    private static let stateColumns =
        "job, schedule_key, active, anchor_at, next_run_at, runs_done, running_cid, running_server, running_since"

    /// Whether the server named by `column` is alive: not stopped, heartbeat within the lease.
    private func alive(_ column: String) -> String {
        """
        EXISTS (SELECT 1 FROM esb_server s WHERE s.name = \(column) AND s.stopped_at IS NULL
          AND s.last_seen >= \(PostgresClusterRecords.now) - \(leaseMS))
        """
    }

    /// Reloads of the servers take turns (an advisory lock for the transaction), so their
    /// row locks never deadlock.
    func sync(_ changes: [JobSync]) async throws {
        try await odb.transaction { connection in
            try await connection.run("SELECT pg_advisory_xact_lock(hashtext('esb.scheduler.sync'))", logger: odb.logger)
            for change in changes.sorted(by: { $0.state.job < $1.state.job }) {
                let state = change.state
                switch change.change {
                case .reset:
                    try await connection.run("""
                        INSERT INTO scheduler_state(job, schedule_key, active, anchor_at, next_run_at, runs_done)
                        SELECT \(state.job), \(state.scheduleKey), \(state.active), \(state.anchor), \(state.nextRunAt), 0
                        WHERE EXISTS (SELECT 1 FROM config_object WHERE kind = 'scheduler' AND name = \(state.job) AND body = \(change.body))
                        ON CONFLICT (job) DO UPDATE SET schedule_key = excluded.schedule_key, active = excluded.active,
                          anchor_at = excluded.anchor_at, next_run_at = excluded.next_run_at, runs_done = 0
                        WHERE scheduler_state.schedule_key <> excluded.schedule_key
                        """, logger: odb.logger)
                case .revive:
                    try await connection.run("""
                        UPDATE scheduler_state SET next_run_at = \(state.nextRunAt)
                        WHERE job = \(state.job) AND schedule_key = \(state.scheduleKey) AND active AND next_run_at IS NULL
                          AND EXISTS (SELECT 1 FROM config_object WHERE kind = 'scheduler' AND name = \(state.job) AND body = \(change.body))
                        """, logger: odb.logger)
                case .toggle:
                    try await connection.run("""
                        UPDATE scheduler_state SET active = \(state.active), next_run_at = \(state.nextRunAt)
                        WHERE job = \(state.job) AND schedule_key = \(state.scheduleKey) AND active <> \(state.active)
                          AND EXISTS (SELECT 1 FROM config_object WHERE kind = 'scheduler' AND name = \(state.job) AND body = \(change.body))
                        """, logger: odb.logger)
                }
            }
            try await connection.run("""
                DELETE FROM scheduler_state s WHERE NOT EXISTS (
                  SELECT 1 FROM config_object o WHERE o.kind = 'scheduler' AND o.name = s.job)
                """, logger: odb.logger)
            try await connection.run("""
                DELETE FROM scheduler_run r WHERE NOT EXISTS (
                  SELECT 1 FROM config_object o WHERE o.kind = 'scheduler' AND o.name = r.job)
                """, logger: odb.logger)
        }
    }

    func nextDue(jobs: [String]?) async throws -> Int64? {
        for try await next in try await odb.query("""
            SELECT min(next_run_at) FROM scheduler_state WHERE next_run_at IS NOT NULL
              AND (\(jobs == nil) OR job = ANY(\(jobs ?? [])))
            """, logger: odb.logger).decode(Int64?.self) {
            return next
        }
        return nil
    }

    func claim(now: Int64, jobs: [String]?, orphans: [String], foreignAfter: Int64, limit: Int, ends: [JobRun],
               _ plan: @escaping @Sendable ([JobState]) -> [ClaimOutcome]) async throws -> [ClaimOutcome] {
        try await odb.transaction { connection in
            for run in ends { try await finish(run, release: true, on: connection) }
            var due: [JobState] = []
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.stateColumns), \(unescaped: alive("running_server")) FROM scheduler_state
                WHERE next_run_at <= \(now)
                  AND (\(jobs == nil) OR job = ANY(\(jobs ?? [])) OR (job = ANY(\(orphans)) AND next_run_at <= \(now - foreignAfter)))
                ORDER BY next_run_at LIMIT \(Int64(limit)) FOR UPDATE SKIP LOCKED
                """, logger: odb.logger)
            for try await row in rows {
                var state = try Self.state(row.makeRandomAccess())
                state.runnerAlive = try row.makeRandomAccess()[9].decode(Bool.self)
                due.append(state)
            }
            guard !due.isEmpty else { return [] }
            let outcomes = plan(due)
            for outcome in outcomes { try await write(outcome, on: connection) }
            return outcomes
        }
    }

    private func write(_ outcome: ClaimOutcome, on connection: PostgresConnection) async throws {
        if let interrupted = outcome.interrupted {
            try await connection.run("""
                UPDATE scheduler_run SET status = 'interrupted',
                  error = coalesce(error, 'the server running it stopped or went silent mid-run')
                WHERE cid = \(interrupted) AND status = 'running'
                """, logger: odb.logger)
        }
        if let start = outcome.start {
            try await insert(start, on: connection)
            try await connection.run("""
                UPDATE scheduler_state SET next_run_at = \(outcome.nextRunAt), runs_done = \(Int64(outcome.runsDone)),
                  running_cid = \(start.cid), running_server = \(start.server), running_since = \(start.startedAt)
                WHERE job = \(outcome.job)
                """, logger: odb.logger)
        } else {
            let clear = outcome.interrupted != nil
            try await connection.run("""
                UPDATE scheduler_state SET next_run_at = \(outcome.nextRunAt), runs_done = \(Int64(outcome.runsDone)),
                  running_cid = CASE WHEN \(clear) THEN NULL ELSE running_cid END,
                  running_server = CASE WHEN \(clear) THEN NULL ELSE running_server END,
                  running_since = CASE WHEN \(clear) THEN NULL ELSE running_since END
                WHERE job = \(outcome.job)
                """, logger: odb.logger)
        }
        if let record = outcome.record { try await insert(record, on: connection) }
    }

    private func insert(_ run: JobRun, on connection: PostgresConnection) async throws {
        try await connection.run("""
            INSERT INTO scheduler_run(\(unescaped: JobRun.columns)) VALUES (\(run.job), \(run.cid), \(run.scheduledAt),
              \(run.startedAt), \(run.finishedAt), \(run.durationMS), \(run.status.rawValue), \(run.error), \(run.server))
            """, logger: odb.logger)
    }

    func startManual(_ run: JobRun, busy: @escaping @Sendable (String) -> Bool) async throws -> Bool {
        try await odb.transaction { [server] connection in
            var previous: (cid: String?, runner: String?, alive: Bool)?
            for try await row in try await connection.query("""
                SELECT running_cid, running_server, \(unescaped: alive("running_server"))
                FROM scheduler_state WHERE job = \(run.job) FOR UPDATE
                """, logger: odb.logger) {
                let random = row.makeRandomAccess()
                previous = (try random[0].decode(String?.self), try random[1].decode(String?.self), try random[2].decode(Bool.self))
            }
            guard let previous else { return false }
            if let cid = previous.cid {
                // This server's own run: going while a task of it runs, whatever its heartbeat says.
                let going = previous.runner == server ? busy(cid) : previous.alive
                if going { return false }
                try await connection.run("""
                    UPDATE scheduler_run SET status = 'interrupted', error = coalesce(error, 'its server stopped or went silent mid-run')
                    WHERE cid = \(cid) AND status = 'running'
                    """, logger: odb.logger)
            }
            try await connection.run("""
                UPDATE scheduler_state SET running_cid = \(run.cid), running_server = \(run.server), running_since = \(run.startedAt)
                WHERE job = \(run.job)
                """, logger: odb.logger)
            try await insert(run, on: connection)
            return true
        }
    }

    func runningHere() async throws -> [(job: String, cid: String)] {
        var runs: [(job: String, cid: String)] = []
        for try await (job, cid) in try await odb.query("""
            SELECT job, cid FROM scheduler_run WHERE status = 'running' AND server = \(server)
            """, logger: odb.logger).decode((String, String).self) {
            runs.append((job, cid))
        }
        return runs
    }

    /// The services of units deployed on live servers other than this one, as each server
    /// recorded its own deployments.
    func servicesDeployedElsewhere() async throws -> Set<String> {
        var services: Set<String> = []
        for try await text in try await odb.query("""
            SELECT DISTINCT v.services FROM deployment_server d
            JOIN deployment_version v ON v.unit = d.unit AND v.hash = d.hash
            WHERE d.status = 'deployed' AND d.server <> \(server) AND \(unescaped: alive("d.server"))
            """, logger: odb.logger).decode(String.self) {
            if let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) { services.formUnion(names) }
        }
        return services
    }

    func finish(_ runs: [JobRun], release: Bool) async throws {
        try await odb.transaction { connection in
            for run in runs { try await finish(run, release: release, on: connection) }
        }
    }

    private func finish(_ run: JobRun, release: Bool, on connection: PostgresConnection) async throws {
        try await connection.run("""
            UPDATE scheduler_run SET status = \(run.status.rawValue), error = \(run.error), finished_at = \(run.finishedAt),
              duration_ms = \(run.durationMS)
            WHERE cid = \(run.cid) AND status = 'running'
            """, logger: odb.logger)
        if release {
            try await connection.run("""
                UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL
                WHERE job = \(run.job) AND running_cid = \(run.cid)
                """, logger: odb.logger)
        }
    }

    func release(job: String, cid: String) async throws {
        _ = try await odb.execute("""
            UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL
            WHERE job = \(job) AND running_cid = \(cid)
            """, logger: odb.logger)
    }

    func recover(now: Int64) async throws -> Int {
        try await odb.transaction { [server] connection in
            var count = 0
            for try await _ in try await connection.query("""
                UPDATE scheduler_run SET status = 'interrupted', finished_at = \(now),
                  error = \(JobRun.stoppedMidRun)
                WHERE status = 'running' AND server = \(server) RETURNING id
                """, logger: odb.logger) { count += 1 }
            try await connection.run("""
                UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL
                WHERE running_server = \(server)
                """, logger: odb.logger)
            return count
        }
    }

    func takeOver(now: Int64, leaseMS: Int64) async throws -> Int {
        try await odb.transaction { [server] connection in
            var count = 0
            for try await _ in try await connection.query("""
                UPDATE scheduler_run SET status = 'interrupted', finished_at = \(now),
                  error = 'the server running it (' || server || ') stopped or went silent mid-run'
                WHERE status = 'running' AND server <> \(server) AND NOT \(unescaped: alive("scheduler_run.server")) RETURNING id
                """, logger: odb.logger) { count += 1 }
            try await connection.run("""
                UPDATE scheduler_state SET running_cid = NULL, running_server = NULL, running_since = NULL
                WHERE running_server IS NOT NULL AND running_server <> \(server)
                  AND NOT \(unescaped: alive("scheduler_state.running_server"))
                """, logger: odb.logger)
            return count
        }
    }

    func states() async throws -> [String: JobState] {
        var states: [String: JobState] = [:]
        for try await row in try await odb.query("SELECT \(unescaped: Self.stateColumns) FROM scheduler_state", logger: odb.logger) {
            let state = try Self.state(row.makeRandomAccess())
            states[state.job] = state
        }
        return states
    }

    func lastRuns() async throws -> [String: JobRun] {
        var runs: [String: JobRun] = [:]
        for try await row in try await odb.query("""
            SELECT DISTINCT ON (job) \(unescaped: JobRun.columns) FROM scheduler_run ORDER BY job, started_at DESC, id DESC
            """, logger: odb.logger) {
            let run = try Self.run(row.makeRandomAccess())
            runs[run.job] = run
        }
        return runs
    }

    func runs(job: String, limit: Int) async throws -> [JobRun] {
        var runs: [JobRun] = []
        for try await row in try await odb.query("""
            SELECT \(unescaped: JobRun.columns) FROM scheduler_run WHERE job = \(job) ORDER BY started_at DESC, id DESC LIMIT \(Int64(limit))
            """, logger: odb.logger) {
            runs.append(try Self.run(row.makeRandomAccess()))
        }
        return runs
    }

    func insertCopied(_ states: [JobState]) async throws {
        try await odb.transaction { connection in
            for state in states {
                try await connection.run("""
                    INSERT INTO scheduler_state(job, schedule_key, active, anchor_at, next_run_at, runs_done)
                    VALUES (\(state.job), \(state.scheduleKey), \(state.active), \(state.anchor), \(state.nextRunAt), \(Int64(state.runsDone)))
                    """, logger: odb.logger)
            }
        }
    }

    func prune(keep: Int) async throws -> Int {
        try await odb.execute("""
            DELETE FROM scheduler_run WHERE id IN (
              SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY job ORDER BY started_at DESC, id DESC) AS n FROM scheduler_run) ranked
              WHERE n > \(Int64(keep)))
            RETURNING id
            """, logger: odb.logger)
    }

    private static func state(_ row: PostgresRandomAccessRow) throws -> JobState {
        JobState(job: try row[0].decode(String.self), scheduleKey: try row[1].decode(String.self), active: try row[2].decode(Bool.self),
                 anchor: try row[3].decode(Int64.self), nextRunAt: try row[4].decode(Int64?.self),
                 runsDone: Int(try row[5].decode(Int64.self)), runningCID: try row[6].decode(String?.self),
                 runningServer: try row[7].decode(String?.self), runningSince: try row[8].decode(Int64?.self))
    }

    private static func run(_ row: PostgresRandomAccessRow) throws -> JobRun {
        let status = try row[6].decode(String.self)
        return JobRun(job: try row[0].decode(String.self), cid: try row[1].decode(String.self),
                      scheduledAt: try row[2].decode(Int64.self), startedAt: try row[3].decode(Int64.self),
                      finishedAt: try row[4].decode(Int64?.self), durationMS: try row[5].decode(Int64?.self),
                      status: JobRun.Status(rawValue: status) ?? .failed, error: try row[7].decode(String?.self),
                      server: try row[8].decode(String.self))
    }
}
