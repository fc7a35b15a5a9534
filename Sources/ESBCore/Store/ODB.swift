import Foundation
import GRDB

/// The operational database: one SQLite file in WAL mode, through GRDB on the system libsqlite3.
///
/// GRDB runs every statement on its own dispatch queues (one writer, a reader pool), so
/// blocking sqlite calls never occupy Swift's cooperative pool.
public final class ODB: Sendable {
    /// The database file.
    public let path: String
    /// The GRDB pool; other core components add their queries on top of it.
    public let pool: DatabasePool

    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    /// - Throws: ``StoreError`` naming the file and the cause.
    public init(path: String) throws(StoreError) {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw StoreError("ODB '\(path)' cannot be opened: \(error)")
        }
    }

    /// The schema, one append-only migration a version. Never edit a shipped migration.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-meta") { db in
            try db.create(table: "esb_meta") { table in
                table.primaryKey("key", .text)
                table.column("value", .text).notNull()
            }
            try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('created_at', ?)",
                           arguments: [Date().ISO8601Format()])
        }
        DeploymentStore.migrate(&migrator)
        ObjectStore.migrate(&migrator)
        DeploymentStore.migrateCrashTracking(&migrator)
        AsyncStore.migrate(&migrator)
        DeploymentStore.migrateImports(&migrator)
        return migrator
    }

    /// The applied migration identifiers, oldest first.
    public func appliedMigrations() async throws -> [String] {
        try await pool.read { db in try Self.migrator.appliedIdentifiers(db).sorted() }
    }

    /// The journal mode in force (`wal` when healthy).
    public func journalMode() async throws -> String {
        try await pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
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

/// The ODB could not be opened, read or written.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
