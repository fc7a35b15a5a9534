import ESBStore
import Foundation
import GRDB
import Logging

/// ``DeploymentRecords`` on SQLite; each method is one GRDB write or read transaction.
struct SQLiteDeploymentRecords: DeploymentRecords {
    let pool: DatabasePool

    /// The registry's tables, as migration `v2-deployments` created them.
    static func createTables(_ db: Database) throws {
        try db.create(table: "deployment_unit") { table in
            table.primaryKey("name", .text)
            table.column("kind", .text).notNull()
            table.column("status", .text).notNull()
            table.column("serving_version", .integer)
            table.column("error", .text)
            table.column("created_at", .datetime).notNull()
            table.column("updated_at", .datetime).notNull()
        }
        try db.create(table: "deployment_version") { table in
            table.column("unit", .text).notNull().references("deployment_unit", onDelete: .cascade)
            table.column("version", .integer).notNull()
            table.column("hash", .text).notNull()
            table.column("source", .blob).notNull()
            table.column("services", .text).notNull()
            table.column("status", .text).notNull()
            table.column("error", .text)
            table.column("created_at", .datetime).notNull()
            table.primaryKey(["unit", "version"])
        }
    }

    /// Migration `v4-crash-tracking`.
    static func addCrashCountColumn(_ db: Database) throws {
        try db.alter(table: "deployment_unit") { table in
            table.add(column: "crash_count", .integer).notNull().defaults(to: 0)
        }
    }

    /// Migration `v6-library-imports`.
    static func addImportsColumn(_ db: Database) throws {
        try db.alter(table: "deployment_version") { table in
            table.add(column: "imports", .text).notNull().defaults(to: "[]")
        }
    }

    /// Migration `v9-cluster-deployments`: nothing on SQLite, whose one server's status is the unit's.
    static func createClusterTables(_ db: Database) throws {}

    func recordOnThisServer(unit: String, hash: String, status: UnitStatus, error: String?) async throws {}

    func serverStatuses() async throws -> [String: [DeploymentStore.ServerStatus]] { [:] }

    func sharedArtifact(key: String) async throws -> Data? { nil }

    func shareArtifact(key: String, library: Data) async throws {}

    func followOtherServers(logger: Logger, deployed: @escaping @Sendable (String?) async -> Void) async {}

    func beginRun(inFlight: Set<String>, quarantineAfter: Int) async throws -> [String] {
        try await pool.write { db in
            let running = try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'running'") == "1"
            var quarantined: [String] = []
            if running {
                for unit in inFlight.sorted() {
                    try db.execute(sql: "UPDATE deployment_unit SET crash_count = crash_count + 1 WHERE name = ? AND serving_version IS NOT NULL AND status != ?",
                                   arguments: [unit, UnitStatus.quarantined])
                }
                quarantined = try String.fetchAll(db, sql: "SELECT name FROM deployment_unit WHERE crash_count >= ? AND status != ?",
                                                  arguments: [quarantineAfter, UnitStatus.quarantined])
                try db.execute(sql: """
                    UPDATE deployment_unit SET status = ?, updated_at = ?,
                      error = 'quarantined: it was running in ' || crash_count || ' crashes in a row; deploy it again to load it'
                    WHERE crash_count >= ? AND status != ?
                    """, arguments: [UnitStatus.quarantined, Date(), quarantineAfter, UnitStatus.quarantined])
            }
            try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('running', '1') ON CONFLICT(key) DO UPDATE SET value = '1'")
            return quarantined
        }
    }

    func endRun() async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE esb_meta SET value = '0' WHERE key = 'running'")
            try db.execute(sql: "UPDATE deployment_unit SET crash_count = 0")
        }
    }

    func recordDeployed(_ version: DeploymentStore.Version, keep: Int) async throws -> Int {
        try await pool.write { db in
            let number = try Self.insert(db, version)
            try db.execute(sql: "UPDATE deployment_unit SET status = ?, serving_version = ?, error = NULL, crash_count = 0, updated_at = ? WHERE name = ?",
                           arguments: [UnitStatus.deployed, number, Date(), version.unit])
            // Keep the serving version plus `keep` older ones.
            try db.execute(sql: """
                DELETE FROM deployment_version WHERE unit = ? AND version NOT IN
                  (SELECT version FROM deployment_version WHERE unit = ? ORDER BY version DESC LIMIT ?)
                """, arguments: [version.unit, version.unit, keep + 1])
            return number
        }
    }

    func recordFailed(_ version: DeploymentStore.Version) async throws {
        try await pool.write { db in
            _ = try Self.insert(db, version)
            try db.execute(sql: "UPDATE deployment_unit SET status = ?, error = ?, updated_at = ? WHERE name = ?",
                           arguments: [UnitStatus.failed, version.error, Date(), version.unit])
        }
    }

    /// Inserts the unit if new and `version` as its next version; returns the number.
    private static func insert(_ db: Database, _ version: DeploymentStore.Version) throws -> Int {
        let now = Date()
        try db.execute(sql: """
            INSERT INTO deployment_unit(name, kind, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(name) DO NOTHING
            """, arguments: [version.unit, version.kind, version.status, now, now])
        let number = (try Int.fetchOne(db, sql: "SELECT MAX(version) FROM deployment_version WHERE unit = ?",
                                       arguments: [version.unit]) ?? 0) + 1
        let servicesJSON = String(decoding: try JSONEncoder().encode(version.services), as: UTF8.self)
        let importsJSON = String(decoding: try JSONEncoder().encode(version.imports), as: UTF8.self)
        try db.execute(sql: """
            INSERT INTO deployment_version(unit, version, hash, source, services, imports, status, error, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [version.unit, number, version.hash, version.source, servicesJSON, importsJSON,
                             version.status, version.error, now])
        return number
    }

    func units() async throws -> [StoredUnit] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT u.name, u.kind, u.status, u.serving_version, u.error, u.created_at, u.updated_at,
                       v.hash, v.services, v.imports
                FROM deployment_unit u
                LEFT JOIN deployment_version v ON v.unit = u.name AND v.version = u.serving_version
                ORDER BY u.created_at, u.name
                """).map { row in
                let name: String = row["name"]
                return StoredUnit(name: name, kind: row["kind"], status: row["status"], hash: row["hash"], version: row["serving_version"],
                           services: try StoredUnit.list(row["services"], "services", name),
                           imports: try StoredUnit.list(row["imports"], "imports", name),
                           error: row["error"], createdAt: row["created_at"], updatedAt: row["updated_at"])
            }
        }
    }

    func serving(unit: String) async throws -> (source: Data, recordedAt: Date)? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: """
                SELECT v.source, v.created_at FROM deployment_unit u JOIN deployment_version v
                ON v.unit = u.name AND v.version = u.serving_version WHERE u.name = ?
                """, arguments: [unit]).map { row in (row[0], row[1]) }
        }
    }

    func versionCount(unit: String) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deployment_version WHERE unit = ?", arguments: [unit]) ?? 0
        }
    }
}

extension UnitKind: DatabaseValueConvertible {}
extension UnitStatus: DatabaseValueConvertible {}
