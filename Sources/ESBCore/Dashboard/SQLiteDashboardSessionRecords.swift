import ESBStore
import GRDB

/// ``DashboardSessionRecords`` on SQLite.
struct SQLiteDashboardSessionRecords: DashboardSessionRecords {
    let pool: DatabasePool

    /// Migration `v10-dashboard-sessions`.
    static func createTable(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE dashboard_session (digest TEXT PRIMARY KEY, csrf TEXT NOT NULL, credentials BLOB NOT NULL,
              started_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)
            """)
    }

    func insert(digest: String, _ session: DashboardSessionStore.Session) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO dashboard_session(digest, csrf, credentials, started_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [digest, session.csrf, session.credentials, session.startedAt, session.expiresAt])
        }
    }

    func session(digest: String) async throws -> DashboardSessionStore.Session? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT csrf, credentials, started_at, expires_at FROM dashboard_session WHERE digest = ?",
                             arguments: [digest]).map { row in
                DashboardSessionStore.Session(csrf: row["csrf"], credentials: row["credentials"], startedAt: row["started_at"],
                                              expiresAt: row["expires_at"])
            }
        }
    }

    func renew(digest: String, expiresAt: Int64) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE dashboard_session SET expires_at = ? WHERE digest = ?", arguments: [expiresAt, digest])
        }
    }

    func delete(digest: String) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM dashboard_session WHERE digest = ?", arguments: [digest]) }
    }

    func prune(endedBefore now: Int64) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM dashboard_session WHERE expires_at < ?", arguments: [now]) }
    }
}
