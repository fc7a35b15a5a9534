import ESBStore
import Foundation
import PostgresNIO

/// ``AsyncRecords`` on PostgreSQL: the `async_invocation` table, shared by the servers of a
/// cluster. Accepts are group-committed (``PostgresGroupInserter``); every other write is
/// its own transaction on a pooled connection. Due records are claimed with `FOR UPDATE
/// SKIP LOCKED`, so concurrent claimers never take one record twice, and a claim names its
/// server (`claimed_by`). The claim lasts as long as that server's heartbeat in
/// `esb_server` (``ClusterMembership``): a server takes back its own claims at start, and
/// the others take over the claims of a server that stopped or went silent for longer than
/// the lease.
struct PostgresAsyncRecords: AsyncRecords {
    let odb: PostgresODB
    /// This server's `[main] name`, written into its claims.
    let server: String
    /// `[cluster] lease_seconds` in milliseconds: this server claims work only while its own
    /// heartbeat is younger than half of it, well before the others would take its claims over.
    let leaseMS: Int64
    private let inserter: PostgresGroupInserter

    init(odb: PostgresODB, server: String, leaseMS: Int64) {
        self.odb = odb
        self.server = server
        self.leaseMS = leaseMS
        inserter = PostgresGroupInserter(
            odb: odb, table: "async_invocation",
            columns: Self.columns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) },
            conflictKey: "cid")
    }

    /// Migration `v5-async`.
    static let createTable = [
        """
        CREATE TABLE async_invocation (
          cid text PRIMARY KEY, kind text NOT NULL, source text, orig_cid text, target text NOT NULL, payload bytea NOT NULL,
          callback text, callback_id text NOT NULL, context text, repeats bigint NOT NULL, interval_ms bigint NOT NULL,
          backoff double precision NOT NULL, max_interval_ms bigint, attempts bigint NOT NULL, status text NOT NULL,
          errors text NOT NULL, response bytea, next_run_at bigint, callback_status text NOT NULL,
          callback_deliveries bigint NOT NULL, callback_deferrals bigint NOT NULL, callback_error text,
          interruptions bigint NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL, finished_at bigint)
        """,
        "CREATE INDEX async_invocation_due ON async_invocation(next_run_at) WHERE next_run_at IS NOT NULL",
        "CREATE INDEX async_invocation_status ON async_invocation(status)",
        "CREATE INDEX async_invocation_finished ON async_invocation(finished_at) WHERE finished_at IS NOT NULL",
    ]

    /// Migration `v8-async-claims`.
    static let claimColumn = [
        "ALTER TABLE async_invocation ADD COLUMN claimed_by text",
        "CREATE INDEX async_invocation_claimed ON async_invocation(claimed_by) WHERE claimed_by IS NOT NULL",
    ]

    private static let columns = """
        cid, kind, source, orig_cid, target, payload, callback, callback_id, context, repeats, interval_ms, backoff,
        max_interval_ms, attempts, status, errors, response, next_run_at, callback_status, callback_deliveries,
        callback_deferrals, callback_error, interruptions, created_at, updated_at, finished_at
        """

    /// Accepts go into group commits: one multi-row INSERT carries the records of every
    /// caller waiting meanwhile.
    func insert(_ record: AsyncRecord) async throws {
        let r = record
        let errors = try Self.errorsJSON(r)
        try await inserter.insert(bytes: r.payload.count + (r.response?.count ?? 0)) { b in
            b.append(r.cid); b.append(r.kind.rawValue); b.append(r.source); b.append(r.origCID); b.append(r.target)
            try? b.append(r.payload); b.append(r.callback); b.append(r.callbackID); b.append(r.context)
            b.append(Int64(r.repeats)); b.append(r.intervalMS); b.append(r.backoff); b.append(r.maxIntervalMS)
            b.append(Int64(r.attempts)); b.append(r.status.rawValue); b.append(errors); try? b.append(r.response)
            b.append(r.nextRunAt); b.append(r.callbackStatus.rawValue); b.append(Int64(r.callbackDeliveries))
            b.append(Int64(r.callbackDeferrals)); b.append(r.callbackError); b.append(Int64(r.interruptions))
            b.append(r.createdAt); b.append(r.updatedAt); b.append(r.finishedAt)
        }
    }

    /// Writes the step's outcome only while this server still holds the claim: after a
    /// take-over (this server was silent past the lease) the new owner's run counts.
    /// - Throws: ``AsyncClaimLost`` when another server took the record over.
    func update(_ record: AsyncRecord) async throws {
        try await odb.transaction { connection in
            var held = false
            for try await _ in try await connection.query(
                "SELECT 1 FROM async_invocation WHERE cid = \(record.cid) AND claimed_by = \(server) FOR UPDATE", logger: odb.logger) {
                held = true
            }
            guard held else { throw AsyncClaimLost(cid: record.cid) }
            try await Self.update(record, on: { query in try await connection.run(query, logger: odb.logger) })
        }
    }

    private static func update(_ r: AsyncRecord, on run: (PostgresQuery) async throws -> Int) async throws {
        let errors = try errorsJSON(r)
        _ = try await run("""
            UPDATE async_invocation SET kind = \(r.kind.rawValue), source = \(r.source), orig_cid = \(r.origCID),
              target = \(r.target), payload = \(r.payload), callback = \(r.callback), callback_id = \(r.callbackID),
              context = \(r.context), repeats = \(Int64(r.repeats)), interval_ms = \(r.intervalMS), backoff = \(r.backoff),
              max_interval_ms = \(r.maxIntervalMS), attempts = \(Int64(r.attempts)), status = \(r.status.rawValue),
              errors = \(errors), response = \(r.response), next_run_at = \(r.nextRunAt),
              callback_status = \(r.callbackStatus.rawValue), callback_deliveries = \(Int64(r.callbackDeliveries)),
              callback_deferrals = \(Int64(r.callbackDeferrals)), callback_error = \(r.callbackError),
              interruptions = \(Int64(r.interruptions)), created_at = \(r.createdAt), updated_at = \(r.updatedAt),
              finished_at = \(r.finishedAt)
            WHERE cid = \(r.cid)
            """)
    }

    func claimDue(now: Int64, limit: Int, services: [String]?) async throws -> [AsyncRecord] {
        try await odb.transaction { connection in
            var due = try await Self.records(try await connection.query("""
                SELECT \(unescaped: Self.columns) FROM async_invocation WHERE next_run_at <= \(now)
                  AND (\(services == nil) OR \(unescaped: Self.dueService) = ANY(\(services ?? [])))
                  AND NOT EXISTS (SELECT 1 FROM esb_server s WHERE s.name = \(server) AND (s.stopped_at IS NOT NULL
                    OR s.last_seen IS NULL OR s.last_seen < \(unescaped: PostgresClusterRecords.now) - \(leaseMS / 2)))
                ORDER BY next_run_at LIMIT \(Int64(limit)) FOR UPDATE SKIP LOCKED
                """, logger: odb.logger))
            for index in due.indices {
                due[index].claim(now: now)
                try await Self.update(due[index], on: { query in try await connection.run(query, logger: odb.logger) })
            }
            if !due.isEmpty {
                try await connection.run(
                    "UPDATE async_invocation SET claimed_by = \(server) WHERE cid = ANY(\(due.map(\.cid)))", logger: odb.logger)
            }
            return due
        }
    }

    /// The service a record's due step calls: the target for an attempt, else the callback.
    private static let dueService = "(CASE WHEN status IN ('pending', 'running') THEN target ELSE callback END)"

    func nextDue(services: [String]?) async throws -> Int64? {
        for try await next in try await odb.query("""
            SELECT min(next_run_at) FROM async_invocation WHERE next_run_at IS NOT NULL
              AND (\(services == nil) OR \(unescaped: Self.dueService) = ANY(\(services ?? [])))
            """, logger: odb.logger).decode(Int64?.self) {
            return next
        }
        return nil
    }

    func recover(now: Int64) async throws -> (attempts: Int, callbacks: Int) {
        try await takeBack(now: now, from: .mine)
    }

    func releaseStranded(now: Int64, running: [String]) async throws -> (attempts: Int, callbacks: Int) {
        try await takeBack(now: now, from: .mineExcept(running))
    }

    func takeOver(now: Int64, leaseMS: Int64) async throws -> (attempts: Int, callbacks: Int) {
        try await takeBack(now: now, from: .silent(leaseMS: leaseMS))
    }

    /// Whose running steps a take-back makes due again.
    private enum Claimers {
        /// This server's claims from its last run, and claims made before claims had owners.
        case mine
        /// This server's claims but those of `running` (steps its tasks run now).
        case mineExcept([String])
        /// Other servers' claims, where the server stopped or has not renewed its heartbeat
        /// for `leaseMS` (the ODB's clock).
        case silent(leaseMS: Int64)
    }

    /// Makes the running attempts and callbacks of `claimers` due at `now`, counting an interruption.
    private func takeBack(now: Int64, from claimers: Claimers) async throws -> (attempts: Int, callbacks: Int) {
        let pending = AsyncRecord.Status.pending.rawValue, running = AsyncRecord.Status.running.rawValue
        let callbackPending = AsyncRecord.CallbackStatus.pending.rawValue
        let callbackRunning = AsyncRecord.CallbackStatus.running.rawValue
        let attempts: PostgresQuery, callbacks: PostgresQuery
        switch claimers {
        case .mine:
            attempts = """
                UPDATE async_invocation SET status = \(pending), next_run_at = \(now), interruptions = interruptions + 1,
                  updated_at = \(now), claimed_by = NULL
                WHERE status = \(running) AND (claimed_by IS NULL OR claimed_by = \(server)) RETURNING cid
                """
            callbacks = """
                UPDATE async_invocation SET callback_status = \(callbackPending), next_run_at = \(now),
                  interruptions = interruptions + 1, updated_at = \(now), claimed_by = NULL
                WHERE callback_status = \(callbackRunning) AND (claimed_by IS NULL OR claimed_by = \(server)) RETURNING cid
                """
        case .mineExcept(let busy):
            attempts = """
                UPDATE async_invocation SET status = \(pending), next_run_at = \(now), interruptions = interruptions + 1,
                  updated_at = \(now), claimed_by = NULL
                WHERE status = \(running) AND claimed_by = \(server) AND cid <> ALL(\(busy)) RETURNING cid
                """
            callbacks = """
                UPDATE async_invocation SET callback_status = \(callbackPending), next_run_at = \(now),
                  interruptions = interruptions + 1, updated_at = \(now), claimed_by = NULL
                WHERE callback_status = \(callbackRunning) AND claimed_by = \(server) AND cid <> ALL(\(busy)) RETURNING cid
                """
        case .silent(let leaseMS):
            attempts = """
                UPDATE async_invocation SET status = \(pending), next_run_at = \(now), interruptions = interruptions + 1,
                  updated_at = \(now), claimed_by = NULL
                WHERE status = \(running) AND claimed_by <> \(server) AND NOT EXISTS (
                  SELECT 1 FROM esb_server s WHERE s.name = async_invocation.claimed_by AND s.stopped_at IS NULL
                    AND s.last_seen >= \(unescaped: PostgresClusterRecords.now) - \(leaseMS))
                RETURNING cid
                """
            callbacks = """
                UPDATE async_invocation SET callback_status = \(callbackPending), next_run_at = \(now),
                  interruptions = interruptions + 1, updated_at = \(now), claimed_by = NULL
                WHERE callback_status = \(callbackRunning) AND claimed_by <> \(server) AND NOT EXISTS (
                  SELECT 1 FROM esb_server s WHERE s.name = async_invocation.claimed_by AND s.stopped_at IS NULL
                    AND s.last_seen >= \(unescaped: PostgresClusterRecords.now) - \(leaseMS))
                RETURNING cid
                """
        }
        return try await odb.transaction { connection in
            let attemptCount = try await Self.count(try await connection.query(attempts, logger: odb.logger))
            let callbackCount = try await Self.count(try await connection.query(callbacks, logger: odb.logger))
            return (attemptCount, callbackCount)
        }
    }

    /// In batches of ``pruneBatch``, each its own short statement: a large prune (a lowered
    /// retention) holds no connection for long and stops between batches when cancelled.
    func prune(finishedBefore cutoff: Int64) async throws -> Int {
        var pruned = 0
        while !Task.isCancelled {
            let deleted = try await odb.execute("""
                DELETE FROM async_invocation WHERE cid IN (
                  SELECT cid FROM async_invocation
                  WHERE finished_at < \(cutoff) AND status IN (\(AsyncRecord.Status.done.rawValue), \(AsyncRecord.Status.failed.rawValue))
                    AND callback_status IN (\(AsyncRecord.CallbackStatus.none.rawValue), \(AsyncRecord.CallbackStatus.delivered.rawValue))
                  LIMIT \(Int64(Self.pruneBatch)))
                RETURNING 1
                """, logger: odb.logger)
            pruned += deleted
            if deleted < Self.pruneBatch { break }
        }
        return pruned
    }

    static let pruneBatch = 5_000

    func record(cid: String) async throws -> AsyncRecord? {
        try await Self.records(try await odb.query(
            "SELECT \(unescaped: Self.columns) FROM async_invocation WHERE cid = \(cid)", logger: odb.logger)).first
    }

    func unfinished(after cid: String?, limit: Int) async throws -> [AsyncRecord] {
        let pending = AsyncRecord.Status.pending.rawValue, running = AsyncRecord.Status.running.rawValue
        let callbackPending = AsyncRecord.CallbackStatus.pending.rawValue, callbackRunning = AsyncRecord.CallbackStatus.running.rawValue
        return try await Self.records(try await odb.query("""
            SELECT \(unescaped: Self.columns) FROM async_invocation
            WHERE (status IN (\(pending), \(running)) OR callback_status IN (\(callbackPending), \(callbackRunning)))
              AND cid COLLATE "C" > \(cid ?? "") ORDER BY cid COLLATE "C" LIMIT \(Int64(limit))
            """, logger: odb.logger))
    }

    func counts(_ statuses: [AsyncRecord.Status]) async throws -> [AsyncRecord.Status: Int] {
        var counts = Dictionary(uniqueKeysWithValues: statuses.map { ($0, 0) })
        for try await (status, count) in try await odb.query(
            "SELECT status, count(*) FROM async_invocation WHERE status = ANY(\(statuses.map(\.rawValue))) GROUP BY status",
            logger: odb.logger).decode((String, Int64).self) {
            if let status = AsyncRecord.Status(rawValue: status) { counts[status] = Int(count) }
        }
        return counts
    }

    private static func errorsJSON(_ record: AsyncRecord) throws -> String {
        String(decoding: try JSONEncoder().encode(record.errors), as: UTF8.self)
    }

    private static func count(_ rows: PostgresRowSequence) async throws -> Int {
        var count = 0
        for try await _ in rows { count += 1 }
        return count
    }

    /// Rows of ``columns`` as records; a value the server cannot read is named with its cid.
    private static func records(_ rows: PostgresRowSequence) async throws -> [AsyncRecord] {
        var records: [AsyncRecord] = []
        for try await row in rows {
            let row = row.makeRandomAccess()
            let cid = try row[0].decode(String.self)
            func value<T>(_ column: String, _ raw: String, _ make: (String) -> T?) throws -> T {
                guard let value = make(raw) else { throw StoreError("ODB: async invocation '\(cid)': unknown \(column) '\(raw)'") }
                return value
            }
            let errorsText = try row[15].decode(String.self)
            guard let errors = try? JSONDecoder().decode([String].self, from: Data(errorsText.utf8)) else {
                throw StoreError("ODB: async invocation '\(cid)': errors is not a JSON list of strings")
            }
            var record = AsyncRecord(
                kind: try value("kind", try row[1].decode(String.self), AsyncRecord.Kind.init(rawValue:)),
                target: try row[4].decode(String.self), payload: try row[5].decode(Data.self),
                source: try row[2].decode(String?.self), origCID: try row[3].decode(String?.self),
                callback: try row[6].decode(String?.self), now: 0)
            record.cid = cid
            record.callbackID = try row[7].decode(String.self)
            record.context = try row[8].decode(String?.self)
            record.repeats = Int(try row[9].decode(Int64.self))
            record.intervalMS = try row[10].decode(Int64.self)
            record.backoff = try row[11].decode(Double.self)
            record.maxIntervalMS = try row[12].decode(Int64?.self)
            record.attempts = Int(try row[13].decode(Int64.self))
            record.status = try value("status", try row[14].decode(String.self), AsyncRecord.Status.init(rawValue:))
            record.errors = errors
            record.response = try row[16].decode(Data?.self)
            record.nextRunAt = try row[17].decode(Int64?.self)
            record.callbackStatus = try value("callback_status", try row[18].decode(String.self), AsyncRecord.CallbackStatus.init(rawValue:))
            record.callbackDeliveries = Int(try row[19].decode(Int64.self))
            record.callbackDeferrals = Int(try row[20].decode(Int64.self))
            record.callbackError = try row[21].decode(String?.self)
            record.interruptions = Int(try row[22].decode(Int64.self))
            record.createdAt = try row[23].decode(Int64.self)
            record.updatedAt = try row[24].decode(Int64.self)
            record.finishedAt = try row[25].decode(Int64?.self)
            records.append(record)
        }
        return records
    }
}
