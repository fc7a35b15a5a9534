import Crypto
import ESBStore
import Foundation

/// Dashboard sessions in the ODB, so that a session signed in on one server of a cluster
/// works on every other (§12). Tokens are kept only as SHA-256 digests: someone who reads
/// the ODB cannot sign in with what they find there.
public struct DashboardSessionStore: Sendable {
    let records: any DashboardSessionRecords

    public init(odb: ODB) {
        switch odb.connection {
        case .sqlite(let pool): records = SQLiteDashboardSessionRecords(pool: pool)
        case .postgresql(let postgres): records = PostgresDashboardSessionRecords(odb: postgres)
        }
    }

    /// The sessions' table.
    public static let table = ODBMigration(
        "v10-dashboard-sessions", sqlite: SQLiteDashboardSessionRecords.createTable,
        postgresql: PostgresDashboardSessionRecords.createTable)

    /// A session as stored: times are seconds since 1970 (each server's clock).
    public struct Session: Sendable, Equatable {
        public var csrf: String
        /// The admin credentials' fingerprint it was signed in with.
        public var credentials: Data
        public var startedAt: Int64
        /// When it ends unless used again.
        public var expiresAt: Int64

        public init(csrf: String, credentials: Data, startedAt: Int64, expiresAt: Int64) {
            self.csrf = csrf
            self.credentials = credentials
            self.startedAt = startedAt
            self.expiresAt = expiresAt
        }
    }

    /// The digest a token is stored under.
    public static func digest(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Stores a new session under `token`'s digest, dropping sessions that ended before `now`.
    public func insert(token: String, _ session: Session, now: Int64) async throws {
        try await records.prune(endedBefore: now)
        try await records.insert(digest: Self.digest(token), session)
    }

    public func session(token: String) async throws -> Session? {
        try await records.session(digest: Self.digest(token))
    }

    /// Moves the session's end to `expiresAt` (it was used).
    public func renew(token: String, expiresAt: Int64) async throws {
        try await records.renew(digest: Self.digest(token), expiresAt: expiresAt)
    }

    public func delete(token: String) async throws {
        try await records.delete(digest: Self.digest(token))
    }
}

/// What ``DashboardSessionStore`` needs from the ODB: the `dashboard_session` table.
protocol DashboardSessionRecords: Sendable {
    func insert(digest: String, _ session: DashboardSessionStore.Session) async throws
    func session(digest: String) async throws -> DashboardSessionStore.Session?
    func renew(digest: String, expiresAt: Int64) async throws
    func delete(digest: String) async throws
    func prune(endedBefore now: Int64) async throws
}
