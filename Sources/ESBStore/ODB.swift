import Foundation
import GRDB

/// The operational database, whatever engine holds it. Today the engine is SQLite: one
/// file in WAL mode, through GRDB on the system libsqlite3.
///
/// The store names no feature. Features own their tables and hand their migrations up;
/// whoever opens the ODB assembles them in their shipped order (``ODBMigration``). Each
/// feature store states what it needs from the ODB as a protocol of its own (its records)
/// and implements that protocol once per engine, choosing by ``connection``; the logic
/// above the records (validation, crash counting, scheduling) is written once. A second
/// engine adds a case to ``Connection``, a body to each migration and an implementation
/// of each records protocol.
///
/// GRDB runs every statement on its own dispatch queues (one writer, a reader pool), so
/// blocking sqlite calls never occupy Swift's cooperative pool.
public final class ODB: Sendable {
    /// The engines an ODB can live in.
    public enum Engine: String, Sendable, CaseIterable {
        case sqlite
    }

    /// An open connection to the engine, for the feature stores' engine implementations.
    public enum Connection: Sendable {
        /// A GRDB pool on a SQLite file in WAL mode: one writer, concurrent readers.
        case sqlite(DatabasePool)
    }

    /// The engine holding this ODB.
    public var engine: Engine {
        switch connection {
        case .sqlite: .sqlite
        }
    }
    /// Where the ODB is, for messages and health: the database file.
    public let path: String
    /// The engine connection the feature stores run their queries on.
    public let connection: Connection
    private let migrator: DatabaseMigrator
    private var pool: DatabasePool {
        switch connection {
        case .sqlite(let pool): pool
        }
    }

    /// Opens (creating if needed) the database at `path` and runs the pending migrations of
    /// `schema`, after the store's own (`v1-meta`).
    /// - Throws: ``StoreError`` naming the file and the cause.
    public init(path: String, schema: [ODBMigration]) throws(StoreError) {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        var migrator = DatabaseMigrator()
        for migration in [Self.meta] + schema {
            migrator.registerMigration(migration.identifier, migrate: migration.sqlite)
        }
        self.migrator = migrator
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let pool = try DatabasePool(path: path, configuration: configuration)
            try migrator.migrate(pool)
            connection = .sqlite(pool)
        } catch {
            throw StoreError("ODB '\(path)' cannot be opened: \(error)")
        }
    }

    /// The store's own table: when the ODB was created, and the health check's last write.
    static let meta = ODBMigration("v1-meta") { db in
        try db.create(table: "esb_meta") { table in
            table.primaryKey("key", .text)
            table.column("value", .text).notNull()
        }
        try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('created_at', ?)",
                       arguments: [Date().ISO8601Format()])
    }

    /// The applied migration identifiers, oldest first.
    public func appliedMigrations() async throws -> [String] {
        try await pool.read { [migrator] db in try migrator.appliedIdentifiers(db).sorted() }
    }

    /// The SQLite journal mode in force (`wal` when healthy).
    public func journalMode() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// The store's own key-value table (`esb_meta`): `created_at`, the health check's last
    /// write, and the run marker crash counting reads.
    public func meta(_ key: String) async throws -> String? {
        try await pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = ?", arguments: [key]) }
    }

    /// Checks that the database answers a read and a write; returns the error when not.
    public func check() async -> StoreError? {
        do {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('last_health_check', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               arguments: [Date().ISO8601Format()])
            }
            return nil
        } catch {
            return StoreError("ODB '\(path)': \(error)")
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

    /// A step called `identifier` with its SQLite body.
    public init(_ identifier: String, sqlite: @escaping @Sendable (Database) throws -> Void) {
        self.identifier = identifier
        self.sqlite = sqlite
    }
}

/// The ODB could not be opened, read or written.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
