import ESBConcurrency
import ESBStore
import Foundation
import GRDB

/// Durable async invocations in the ODB. A record is committed before its cid is returned
/// (group commits, WAL): after a crash or restart every accepted invocation and callback
/// is still there. Writes go through one ``GroupCommitter``; reads through GRDB's readers.
public final class AsyncStore: Sendable {
    let odb: ODB
    private let committer: GroupCommitter
    /// Rung when work may have become due (an accept); the scheduler waits on it.
    let doorbell = Doorbell()
    let metrics = AsyncMetrics()

    public init(odb: ODB) {
        self.odb = odb
        committer = GroupCommitter(pool: odb.pool)
    }

    /// The invocations' table.
    public static let table = ODBMigration("v5-async") { db in
        try db.create(table: AsyncRecord.databaseTableName) { table in
            table.primaryKey("cid", .text)
            table.column("kind", .text).notNull()
            table.column("source", .text)
            table.column("orig_cid", .text)
            table.column("target", .text).notNull()
            table.column("payload", .blob).notNull()
            table.column("callback", .text)
            table.column("callback_id", .text).notNull()
            table.column("context", .text)
            table.column("repeats", .integer).notNull()
            table.column("interval_ms", .integer).notNull()
            table.column("backoff", .double).notNull()
            table.column("max_interval_ms", .integer)
            table.column("attempts", .integer).notNull()
            table.column("status", .text).notNull()
            table.column("errors", .text).notNull()
            table.column("response", .blob)
            table.column("next_run_at", .integer)
            table.column("callback_status", .text).notNull()
            table.column("callback_deliveries", .integer).notNull()
            table.column("callback_deferrals", .integer).notNull()
            table.column("callback_error", .text)
            table.column("interruptions", .integer).notNull()
            table.column("created_at", .integer).notNull()
            table.column("updated_at", .integer).notNull()
            table.column("finished_at", .integer)
        }
        try db.execute(sql: "CREATE INDEX async_invocation_due ON async_invocation(next_run_at) WHERE next_run_at IS NOT NULL")
        try db.execute(sql: "CREATE INDEX async_invocation_status ON async_invocation(status)")
        try db.execute(sql: "CREATE INDEX async_invocation_finished ON async_invocation(finished_at) WHERE finished_at IS NOT NULL")
    }

    /// Stores a new record; returns once it is committed, then wakes the scheduler.
    func accept(_ record: AsyncRecord) async throws {
        try await committer.write { db in try record.insert(db) }
        metrics.accepted.increment()
        doorbell.ring()
    }

    /// Stores a record's new state.
    func update(_ record: AsyncRecord) async throws {
        try await committer.write { db in try record.update(db) }
    }

    /// Takes up to `limit` records due at `now`, earliest first, and marks them claimed.
    func claimDue(now: Int64, limit: Int) async throws -> [AsyncRecord] {
        try await committer.write { db in
            var due = try AsyncRecord
                .filter(AsyncRecord.CodingKeys.nextRunAt <= now)
                .order(AsyncRecord.CodingKeys.nextRunAt)
                .limit(limit)
                .fetchAll(db)
            for index in due.indices {
                due[index].claim(now: now)
                try due[index].update(db)
            }
            return due
        }
    }

    /// When the next record is due, if any is waiting.
    func nextDue() async throws -> Int64? {
        try await odb.pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT min(next_run_at) FROM async_invocation WHERE next_run_at IS NOT NULL")
        }
    }

    /// After a crash or restart: steps that were running are due again (a callback that had
    /// been handed over will say `redelivered`). Returns how many attempts and callbacks.
    func recover(now: Int64) async throws -> (attempts: Int, callbacks: Int) {
        try await committer.write { db in
            try db.execute(sql: """
                UPDATE async_invocation SET status = ?, next_run_at = ?, interruptions = interruptions + 1, updated_at = ?
                WHERE status = ?
                """, arguments: [AsyncRecord.Status.pending.rawValue, now, now, AsyncRecord.Status.running.rawValue])
            let attempts = db.changesCount
            try db.execute(sql: """
                UPDATE async_invocation SET callback_status = ?, next_run_at = ?, interruptions = interruptions + 1, updated_at = ?
                WHERE callback_status = ?
                """, arguments: [AsyncRecord.CallbackStatus.pending.rawValue, now, now, AsyncRecord.CallbackStatus.running.rawValue])
            return (attempts, db.changesCount)
        }
    }

    /// Deletes finished records that finished before `cutoff`; returns how many.
    func prune(finishedBefore cutoff: Int64) async throws -> Int {
        try await committer.write { db in
            try db.execute(sql: """
                DELETE FROM async_invocation
                WHERE finished_at < ? AND status IN (?, ?) AND callback_status IN (?, ?)
                """, arguments: [cutoff, AsyncRecord.Status.done.rawValue, AsyncRecord.Status.failed.rawValue,
                                 AsyncRecord.CallbackStatus.none.rawValue, AsyncRecord.CallbackStatus.delivered.rawValue])
            return db.changesCount
        }
    }

    /// The record of `cid`, if it exists (not yet pruned).
    public func record(cid: String) async throws -> AsyncRecord? {
        try await odb.pool.read { db in try AsyncRecord.fetchOne(db, key: cid) }
    }

    /// How many records are in each status.
    func counts() async throws -> [AsyncRecord.Status: Int] {
        try await odb.pool.read { db in
            var counts: [AsyncRecord.Status: Int] = [:]
            for status in AsyncRecord.Status.allCases {
                counts[status] = try Int.fetchOne(db, sql: "SELECT count(*) FROM async_invocation WHERE status = ?",
                                                  arguments: [status.rawValue]) ?? 0
            }
            return counts
        }
    }
}
