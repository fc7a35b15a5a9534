import Foundation
import GRDB
import Logging
import PostgresNIO

/// The operational database, whatever engine holds it: an embedded SQLite file (one
/// server) or PostgreSQL (a cluster of servers sharing it).
///
/// The store names no feature. Features own their tables and hand their migrations up;
/// whoever opens the ODB assembles them in their shipped order (``ODBMigration``). Each
/// feature store states what it needs from the ODB as a protocol of its own (its records)
/// and implements that protocol once per engine, choosing by ``connection``; the logic
/// above the records (validation, crash counting, scheduling) is written once.
///
/// Blocking calls never occupy Swift's cooperative pool: GRDB runs every SQLite statement on
/// its own dispatch queues (one writer, a reader pool); PostgresNIO is non-blocking.
public final class ODB: Sendable {
    /// The engines an ODB can live in.
    public enum Engine: String, Sendable, CaseIterable {
        case sqlite
        case postgresql
    }

    /// An open connection to the engine, for the feature stores' engine implementations.
    public enum Connection: Sendable {
        /// A GRDB pool on a SQLite file in WAL mode: one writer, concurrent readers.
        case sqlite(DatabasePool)
        /// A pool of PostgreSQL connections (``PostgresODB``).
        case postgresql(PostgresODB)
    }

    /// The engine holding this ODB.
    public var engine: Engine {
        switch connection {
        case .sqlite: .sqlite
        case .postgresql: .postgresql
        }
    }
    /// Where the ODB is, for messages and health: the SQLite file, or
    /// `postgresql://user@host:port/database` (never a password).
    public let location: String
    /// The engine connection the feature stores run their queries on.
    public let connection: Connection
    private let migrator: DatabaseMigrator?
    /// The migrations ``migrate()`` applies on PostgreSQL (the store's own first).
    private let postgresMigrations: [ODBMigration]

    /// Opens (creating if needed) the SQLite database at `path` and, with `migrate`, runs
    /// the pending migrations of `schema`, after the store's own (`v1-meta`).
    /// - Throws: ``StoreError`` naming the file and the cause; ``StoreError/Cause/refused``
    ///   when the file holds a schema newer than `schema`.
    public init(path: String, schema: [ODBMigration], migrate: Bool = true) throws(StoreError) {
        postgresMigrations = []
        location = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        var migrator = DatabaseMigrator()
        let migrations = [Self.meta] + schema
        for migration in migrations {
            migrator.registerMigration(migration.identifier, migrate: migration.sqlite)
        }
        self.migrator = migrator
        let pool: DatabasePool
        let applied: Set<String>
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            pool = try DatabasePool(path: path, configuration: configuration)
            applied = try pool.read { db in try migrator.appliedIdentifiers(db) }
        } catch {
            throw StoreError("ODB '\(path)' cannot be opened: \(error)")
        }
        if let newer = Self.newerSchemaError(applied: applied, known: migrations, location: path) { throw newer }
        connection = .sqlite(pool)
        if migrate { try migrateSQLite(pool) }
    }

    private func migrateSQLite(_ pool: DatabasePool) throws(StoreError) {
        do {
            try migrator?.migrate(pool)
        } catch {
            throw StoreError("ODB '\(location)' cannot be migrated: \(error)")
        }
    }

    /// Runs the pending migrations of an ODB opened with `migrate: false`, once whatever
    /// had to happen first (``open(_:schema:logger:migrate:attempt:)``) has happened.
    public func migrate() async throws(StoreError) {
        switch connection {
        case .sqlite(let pool):
            // On GRDB's writer queue, not on the caller's (cooperative) thread.
            guard let migrator else { return }
            let location = location
            let failure: StoreError? = await withCheckedContinuation { continuation in
                migrator.asyncMigrate(pool) { result in
                    if case .failure(let error) = result {
                        continuation.resume(returning: StoreError("ODB '\(location)' cannot be migrated: \(error)"))
                    } else {
                        continuation.resume(returning: nil)
                    }
                }
            }
            if let failure { throw failure }
        case .postgresql(let postgres): try await postgres.migrate(postgresMigrations)
        }
    }

    /// An ODB on PostgreSQL, already reached and migrated (``open(_:schema:logger:attempt:)``).
    init(postgres: PostgresODB, migrations: [ODBMigration]) {
        postgresMigrations = migrations
        location = postgres.settings.description
        connection = .postgresql(postgres)
        migrator = nil
    }

    /// Opens the ODB at `location` with `schema` migrated (with `migrate: false`, reached and
    /// checked for a newer schema but not migrated until ``migrate()``).
    ///
    /// PostgreSQL is reached with retries and backoff for up to its ``PostgresODBSettings/connectTimeout``
    /// (`attempt` hears of each failed try, for logs and systemd); wrong credentials, a missing
    /// database or a schema newer than `schema` fail at once with ``StoreError/Cause/refused``.
    /// Concurrent starts on one PostgreSQL migrate one after another (an advisory lock).
    public static func open(
        _ location: ODBLocation, schema: [ODBMigration], logger: Logger, migrate: Bool = true,
        attempt: @Sendable (_ number: Int, _ error: StoreError) -> Void = { _, _ in }
    ) async throws(StoreError) -> ODB {
        switch location {
        case .sqlite(let path):
            return try ODB(path: path, schema: schema, migrate: migrate)
        case .postgresql(let settings):
            let migrations = [Self.meta] + schema
            let postgres = try await PostgresODB.open(settings, migrations: migrations, migrate: migrate, logger: logger,
                                                      attempt: attempt)
            return ODB(postgres: postgres, migrations: migrations)
        }
    }

    /// The store's own table: when the ODB was created, and the health check's last write.
    static let meta = ODBMigration("v1-meta", sqlite: { db in
        try db.create(table: "esb_meta") { table in
            table.primaryKey("key", .text)
            table.column("value", .text).notNull()
        }
        try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('created_at', ?)",
                       arguments: [Date().ISO8601Format()])
    }, postgresql: [
        "CREATE TABLE esb_meta (key text PRIMARY KEY, value text NOT NULL)",
        "INSERT INTO esb_meta(key, value) VALUES ('created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))",
    ])

    /// `applied` holds identifiers this server's schema does not know: a newer server
    /// migrated the ODB, and this one would misread it.
    static func newerSchemaError(applied: Set<String>, known: [ODBMigration], location: String) -> StoreError? {
        let unknown = applied.subtracting(known.map(\.identifier))
        guard !unknown.isEmpty else { return nil }
        return StoreError(.refused, "ODB '\(location)' has a newer schema than this server: it has "
            + "\(unknown.sorted().joined(separator: ", ")); this server knows up to \(known.last?.identifier ?? "nothing"). Upgrade this server")
    }

    /// The applied migration identifiers, sorted.
    public func appliedMigrations() async throws -> [String] {
        switch connection {
        case .sqlite(let pool):
            let migrator = migrator!
            return try await pool.read { db in try migrator.appliedIdentifiers(db).sorted() }
        case .postgresql(let postgres):
            return try await postgres.appliedMigrations().sorted()
        }
    }

    /// The SQLite journal mode in force (`wal` when healthy); nil on other engines.
    public func journalMode() async throws -> String? {
        guard case .sqlite(let pool) = connection else { return nil }
        return try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// The store's own key-value table (`esb_meta`): `created_at`, the health check's last
    /// write, and the run marker crash counting reads.
    public func meta(_ key: String) async throws -> String? {
        switch connection {
        case .sqlite(let pool):
            try await pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = ?", arguments: [key]) }
        case .postgresql(let postgres):
            try await postgres.meta(key)
        }
    }

    /// Sets `key` in `esb_meta` to `value`, or removes it when `value` is nil.
    public func setMeta(_ key: String, _ value: String?) async throws {
        switch connection {
        case .sqlite(let pool):
            try await pool.write { db in
                if let value {
                    try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                   arguments: [key, value])
                } else {
                    try db.execute(sql: "DELETE FROM esb_meta WHERE key = ?", arguments: [key])
                }
            }
        case .postgresql(let postgres):
            if let value {
                try await postgres.setMeta(key, value)
            } else {
                try await postgres.execute("DELETE FROM esb_meta WHERE key = \(key)", logger: postgres.logger)
            }
        }
    }

    /// Checks that the database answers a read and a write; returns the error when not.
    public func check() async -> StoreError? {
        let now = Date().ISO8601Format()
        do {
            switch connection {
            case .sqlite(let pool):
                try await pool.write { db in
                    try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('last_health_check', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                   arguments: [now])
                }
            case .postgresql(let postgres):
                try await postgres.setMeta("last_health_check", now)
            }
            return nil
        } catch {
            return StoreError(.unavailable, "ODB '\(location)': \(StoreError.describe(error))")
        }
    }

    /// Stops the engine's connections; later calls fail.
    public func close() async {
        switch connection {
        case .sqlite(let pool): try? pool.close()
        case .postgresql(let postgres): await postgres.close()
        }
    }
}

/// Where an ODB lives, as `[odb]` says.
public enum ODBLocation: Sendable {
    /// The embedded engine: a SQLite file.
    case sqlite(path: String)
    /// A PostgreSQL database shared by the servers of a cluster.
    case postgresql(PostgresODBSettings)
}

extension ODBLocation: CustomStringConvertible {
    /// `sqlite:/absolute/path` or `postgresql://user@host:port/database` (never the password).
    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(URL(fileURLWithPath: path).standardizedFileURL.path)"
        case .postgresql(let settings): settings.description
        }
    }
}

/// One step of the schema, identified for good: a shipped migration is never edited, a
/// change is a new one. It carries a body per engine.
public struct ODBMigration: Sendable {
    /// Recorded in the ODB once applied, e.g. `v5-async`.
    public let identifier: String
    /// The step on SQLite, inside the migration's transaction.
    public let sqlite: @Sendable (Database) throws -> Void
    /// The step on PostgreSQL: statements run in order, in the migration's transaction; nil
    /// for a step of SQLite alone, neither run nor recorded there (an older server of a
    /// cluster still starts on the ODB).
    public let postgresql: [String]?

    /// A step called `identifier` with its body on each engine.
    public init(_ identifier: String, sqlite: @escaping @Sendable (Database) throws -> Void, postgresql: [String]?) {
        self.identifier = identifier
        self.sqlite = sqlite
        self.postgresql = postgresql
    }
}

/// The ODB could not be opened, read or written.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    /// What the operator should do about it.
    public enum Cause: Sendable, Equatable {
        /// Anything else (a broken file, a failed statement).
        case failed
        /// The database cannot be reached now; retrying later may work.
        case unavailable
        /// The database answered no: wrong credentials, a missing database, a newer
        /// schema, a name in use. Retrying will not help; the configuration must change.
        case refused
    }

    public var cause: Cause
    public var message: String
    /// The work was sent and got no answer: it may or may not have taken effect.
    public var outcomeUnknown = false
    public init(_ message: String) { self.init(.failed, message) }
    public init(_ cause: Cause, _ message: String) {
        self.cause = cause
        self.message = message
    }
    public var description: String { message }

    /// `error` as a ``StoreError`` when it says the ODB cannot be reached now (a connection
    /// refused or lost, PostgreSQL shutting down); nil for any other error.
    public static func unreachable(_ error: any Error) -> StoreError? {
        if let error = error as? StoreError { return error.cause == .unavailable ? error : nil }
        // The pool's own refusal while it cannot open connections (PostgresNIO does not export
        // its type): after about a minute of failed attempts it fails requests at once.
        if String(describing: type(of: error)) == "ConnectionPoolError" {
            return StoreError(.unavailable, "no connection to PostgreSQL can be opened now")
        }
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            // 57P0x: administrator shutdown, crash, cannot connect now; 08xxx: connection exceptions;
            // 53xxx: out of connections or memory; 55P03: a lock not granted within lock_timeout;
            // 25P03: a transaction left idle too long (its server stalled).
            guard state.hasPrefix("57P0") || state.hasPrefix("08") || state.hasPrefix("53") || state == "55P03"
                || state == "25P03" else { return nil }
        case .connectionError, .serverClosedConnection, .uncleanShutdown, .poolClosed, .clientClosedConnection:
            break
        default:
            return nil
        }
        return StoreError(.unavailable, PostgresODB.describe(error))
    }

    /// An engine's error in one line, without the query text or internal detail.
    public static func describe(_ error: any Error) -> String {
        if let error = error as? StoreError { return error.message }
        if let error = error as? PSQLError { return PostgresODB.describe(error) }
        return "\(error)"
    }
}
