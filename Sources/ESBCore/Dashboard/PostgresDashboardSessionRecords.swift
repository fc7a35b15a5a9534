import ESBStore
import Foundation
import PostgresNIO

/// ``DashboardSessionRecords`` on PostgreSQL, shared by the servers of a cluster.
struct PostgresDashboardSessionRecords: DashboardSessionRecords {
    let odb: PostgresODB

    /// Migration `v10-dashboard-sessions`.
    static let createTable = [
        """
        CREATE TABLE dashboard_session (digest text PRIMARY KEY, csrf text NOT NULL, credentials bytea NOT NULL,
          started_at bigint NOT NULL, expires_at bigint NOT NULL)
        """,
    ]

    func insert(digest: String, _ session: DashboardSessionStore.Session) async throws {
        try await odb.execute("""
            INSERT INTO dashboard_session(digest, csrf, credentials, started_at, expires_at)
            VALUES (\(digest), \(session.csrf), \(session.credentials), \(session.startedAt), \(session.expiresAt))
            """, logger: odb.logger)
    }

    func session(digest: String) async throws -> DashboardSessionStore.Session? {
        for try await (csrf, credentials, startedAt, expiresAt) in try await odb.query(
            "SELECT csrf, credentials, started_at, expires_at FROM dashboard_session WHERE digest = \(digest)",
            logger: odb.logger).decode((String, Data, Int64, Int64).self) {
            return .init(csrf: csrf, credentials: credentials, startedAt: startedAt, expiresAt: expiresAt)
        }
        return nil
    }

    func renew(digest: String, expiresAt: Int64) async throws {
        try await odb.execute(
            "UPDATE dashboard_session SET expires_at = \(expiresAt) WHERE digest = \(digest)", logger: odb.logger)
    }

    func delete(digest: String) async throws {
        try await odb.execute("DELETE FROM dashboard_session WHERE digest = \(digest)", logger: odb.logger)
    }

    func prune(endedBefore now: Int64) async throws {
        try await odb.execute("DELETE FROM dashboard_session WHERE expires_at < \(now)", logger: odb.logger)
    }
}
