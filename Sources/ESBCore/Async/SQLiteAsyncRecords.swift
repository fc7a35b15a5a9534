import ESBStore
import Foundation
import GRDB

/// ``AsyncRecords`` on SQLite: the `async_invocation` table in WAL mode. Writes go through
/// one ``SQLiteGroupCommitter`` (one commit per batch of accepts is what lets acceptance keep up
/// with thousands of callers); reads through GRDB's readers.
struct SQLiteAsyncRecords: AsyncRecords {
    let pool: DatabasePool
    private let committer: SQLiteGroupCommitter

    init(pool: DatabasePool) {
        self.pool = pool
        committer = SQLiteGroupCommitter(pool: pool)
    }

    /// The table and its indexes, as migration `v5-async` created them.
    static func createTable(_ db: Database) throws {
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

    func insert(_ record: AsyncRecord) async throws {
        try await committer.write { db in try record.insert(db) }
    }

    func update(_ record: AsyncRecord) async throws {
        try await committer.write { db in try record.update(db) }
    }

    /// One server per file: it takes every due record (`services` is for a shared ODB).
    func claimDue(now: Int64, limit: Int, services _: [String]?) async throws -> [AsyncRecord] {
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

    func nextDue(services _: [String]?) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT min(next_run_at) FROM async_invocation WHERE next_run_at IS NOT NULL")
        }
    }

    /// One server per SQLite ODB: no one else's work to take over.
    func takeOver(now: Int64, leaseMS: Int64) async throws -> (attempts: Int, callbacks: Int) { (0, 0) }

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

    func releaseStranded(now: Int64, running: [String]) async throws -> (attempts: Int, callbacks: Int) {
        let list = String(decoding: try JSONEncoder().encode(running), as: UTF8.self)
        return try await committer.write { db in
            try db.execute(sql: """
                UPDATE async_invocation SET status = ?, next_run_at = ?, interruptions = interruptions + 1, updated_at = ?
                WHERE status = ? AND cid NOT IN (SELECT value FROM json_each(?))
                """, arguments: [AsyncRecord.Status.pending.rawValue, now, now, AsyncRecord.Status.running.rawValue, list])
            let attempts = db.changesCount
            try db.execute(sql: """
                UPDATE async_invocation SET callback_status = ?, next_run_at = ?, interruptions = interruptions + 1, updated_at = ?
                WHERE callback_status = ? AND cid NOT IN (SELECT value FROM json_each(?))
                """, arguments: [AsyncRecord.CallbackStatus.pending.rawValue, now, now, AsyncRecord.CallbackStatus.running.rawValue, list])
            return (attempts, db.changesCount)
        }
    }

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

    func record(cid: String) async throws -> AsyncRecord? {
        try await pool.read { db in try AsyncRecord.fetchOne(db, key: cid) }
    }

    func unfinished(after cid: String?, limit: Int) async throws -> [AsyncRecord] {
        try await pool.read { db in
            try AsyncRecord.fetchAll(db, sql: """
                SELECT * FROM async_invocation
                WHERE (status IN (?, ?) OR callback_status IN (?, ?)) AND cid > ? ORDER BY cid LIMIT ?
                """, arguments: [AsyncRecord.Status.pending.rawValue, AsyncRecord.Status.running.rawValue,
                                 AsyncRecord.CallbackStatus.pending.rawValue, AsyncRecord.CallbackStatus.running.rawValue,
                                 cid ?? "", limit])
        }
    }

    func counts(_ statuses: [AsyncRecord.Status]) async throws -> [AsyncRecord.Status: Int] {
        try await pool.read { db in
            var counts: [AsyncRecord.Status: Int] = [:]
            for status in statuses {
                counts[status] = try Int.fetchOne(db, sql: "SELECT count(*) FROM async_invocation WHERE status = ?",
                                                  arguments: [status.rawValue]) ?? 0
            }
            return counts
        }
    }
}

/// A record is a row of `async_invocation`, its columns named by ``AsyncRecord/CodingKeys``.
extension AsyncRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "async_invocation"
}

extension AsyncRecord.CodingKeys: ColumnExpression {}
