import ESBStore
import Foundation
import GRDB

/// What a deployment unit is: a service file, or a library in `pickup/lib/NAME`.
public enum UnitKind: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    case service, library
}

/// Where a unit stands.
public enum UnitStatus: String, Sendable, Codable, CaseIterable, DatabaseValueConvertible {
    /// A version serves.
    case deployed
    /// The last attempt failed; an earlier version may still serve.
    case failed
    /// It was running in too many crashes in a row; not loaded until deployed again.
    case quarantined
}

/// The registry of deployment units in the ODB: every unit's versions with their source,
/// hash, services, status and error. The source is kept so that a restart can rebuild.
public struct DeploymentStore: Sendable {
    let odb: ODB

    public init(odb: ODB) { self.odb = odb }

    /// One unit as the API shows it.
    public struct Unit: Sendable, Codable, Equatable {
        public var name: String
        public var kind: UnitKind
        public var status: UnitStatus
        /// Hash of the version serving, if any.
        public var hash: String?
        public var version: Int?
        /// Services of the version serving.
        public var services: [String]
        /// The last attempt's error, with diagnostics.
        public var error: String?
        /// The libraries the serving version imports.
        public var imports: [String] = []
        /// For a library: the units whose serving version imports it.
        public var dependents: [String] = []
        public var updatedAt: Date
        public var createdAt: Date
    }

    /// The registry's tables.
    public static let tables = ODBMigration("v2-deployments") { db in
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

    /// What each version imports.
    public static let importsColumn = ODBMigration("v6-library-imports") { db in
        try db.alter(table: "deployment_version") { table in
            table.add(column: "imports", .text).notNull().defaults(to: "[]")
        }
    }

    /// How many crashes in a row quarantine a unit.
    public static let quarantineAfterCrashes = 3

    /// Crashes in a row per unit.
    public static let crashCountColumn = ODBMigration("v4-crash-tracking") { db in
        try db.alter(table: "deployment_unit") { table in
            table.add(column: "crash_count", .integer).notNull().defaults(to: 0)
        }
    }

    /// Marks a run as started. When the previous run never reached ``endRun()`` it crashed:
    /// every unit that had a call in flight at that moment (`inFlight`, from the
    /// ``InFlightLedger``) counts one more crash, and units at ``quarantineAfterCrashes`` are
    /// quarantined. A crash with nothing in flight (an OOM kill of an idle server) counts
    /// against no unit. Returns the units quarantined now.
    public func beginRun(inFlight: Set<String>) async throws -> [String] {
        try await odb.pool.write { db in
            let running = try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'running'") == "1"
            var quarantined: [String] = []
            if running {
                for unit in inFlight.sorted() {
                    try db.execute(sql: "UPDATE deployment_unit SET crash_count = crash_count + 1 WHERE name = ? AND serving_version IS NOT NULL AND status != ?",
                                   arguments: [unit, UnitStatus.quarantined])
                }
                quarantined = try String.fetchAll(db, sql: "SELECT name FROM deployment_unit WHERE crash_count >= ? AND status != ?",
                                                  arguments: [Self.quarantineAfterCrashes, UnitStatus.quarantined])
                try db.execute(sql: """
                    UPDATE deployment_unit SET status = ?, updated_at = ?,
                      error = 'quarantined: it was running in ' || crash_count || ' crashes in a row; deploy it again to load it'
                    WHERE crash_count >= ? AND status != ?
                    """, arguments: [UnitStatus.quarantined, Date(), Self.quarantineAfterCrashes, UnitStatus.quarantined])
            }
            try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('running', '1') ON CONFLICT(key) DO UPDATE SET value = '1'")
            return quarantined
        }
    }

    /// Marks a clean stop: crash counts start again from zero.
    public func endRun() async throws {
        try await odb.pool.write { db in
            try db.execute(sql: "UPDATE esb_meta SET value = '0' WHERE key = 'running'")
            try db.execute(sql: "UPDATE deployment_unit SET crash_count = 0")
        }
    }

    /// Records a version that now serves; keeps at most `keep` older versions.
    @discardableResult
    public func recordDeployed(unit: String, kind: UnitKind, hash: String, source: Data, services: [String],
                               imports: [String] = [], keep: Int) async throws -> Int {
        try await odb.pool.write { db in
            let version = try Self.insertVersion(db, unit: unit, kind: kind, hash: hash, source: source,
                                                 services: services, imports: imports, status: .deployed, error: nil)
            try db.execute(sql: "UPDATE deployment_unit SET status = ?, serving_version = ?, error = NULL, crash_count = 0, updated_at = ? WHERE name = ?",
                           arguments: [UnitStatus.deployed, version, Date(), unit])
            // Keep the serving version plus `keep` older ones.
            try db.execute(sql: """
                DELETE FROM deployment_version WHERE unit = ? AND version NOT IN
                  (SELECT version FROM deployment_version WHERE unit = ? ORDER BY version DESC LIMIT ?)
                """, arguments: [unit, unit, keep + 1])
            return version
        }
    }

    /// Records a failed attempt; a version that was serving stays recorded as serving.
    public func recordFailed(unit: String, kind: UnitKind, hash: String, source: Data, error: String) async throws {
        try await odb.pool.write { db in
            _ = try Self.insertVersion(db, unit: unit, kind: kind, hash: hash, source: source,
                                       services: [], imports: [], status: .failed, error: error)
            try db.execute(sql: "UPDATE deployment_unit SET status = ?, error = ?, updated_at = ? WHERE name = ?",
                           arguments: [UnitStatus.failed, error, Date(), unit])
        }
    }

    private static func insertVersion(_ db: Database, unit: String, kind: UnitKind, hash: String, source: Data,
                                      services: [String], imports: [String], status: UnitStatus, error: String?) throws -> Int {
        let now = Date()
        try db.execute(sql: """
            INSERT INTO deployment_unit(name, kind, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(name) DO NOTHING
            """, arguments: [unit, kind, status, now, now])
        let version = (try Int.fetchOne(db, sql: "SELECT MAX(version) FROM deployment_version WHERE unit = ?",
                                        arguments: [unit]) ?? 0) + 1
        let servicesJSON = String(decoding: try JSONEncoder().encode(services), as: UTF8.self)
        let importsJSON = String(decoding: try JSONEncoder().encode(imports.sorted()), as: UTF8.self)
        try db.execute(sql: """
            INSERT INTO deployment_version(unit, version, hash, source, services, imports, status, error, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [unit, version, hash, source, servicesJSON, importsJSON, status, error, now])
        return version
    }

    /// Every unit, oldest first (the order a restart redeploys them in).
    public func units() async throws -> [Unit] {
        try await odb.pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT u.name, u.kind, u.status, u.serving_version, u.error, u.created_at, u.updated_at,
                       v.hash, v.services, v.imports
                FROM deployment_unit u
                LEFT JOIN deployment_version v ON v.unit = u.name AND v.version = u.serving_version
                ORDER BY u.created_at, u.name
                """)
            func list(_ text: String?) -> [String] {
                text.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
            }
            var units = try rows.map { row in
                let name: String = row["name"], kind: String = row["kind"], status: String = row["status"]
                // A value this server does not know (written by a newer one) is named, not a crash.
                guard let knownKind = UnitKind(rawValue: kind), let knownStatus = UnitStatus(rawValue: status) else {
                    throw StoreError("ODB: deployment unit '\(name)' has kind '\(kind)' and status '\(status)'; this server knows kinds \(UnitKind.allCases.map(\.rawValue)) and statuses \(UnitStatus.allCases.map(\.rawValue))")
                }
                return Unit(name: name, kind: knownKind, status: knownStatus, hash: row["hash"],
                            version: row["serving_version"], services: list(row["services"]), error: row["error"],
                            imports: list(row["imports"]), updatedAt: row["updated_at"], createdAt: row["created_at"])
            }
            for index in units.indices where units[index].kind == .library {
                let module = Self.moduleName(ofLibraryUnit: units[index].name)
                units[index].dependents = units.filter { $0.imports.contains(module) }.map(\.name)
            }
            return units
        }
    }

    /// `lib/NAME` → `NAME`.
    public static func moduleName(ofLibraryUnit unit: String) -> String {
        unit.hasPrefix("lib/") ? String(unit.dropFirst(4)) : unit
    }

    /// The source of the version serving `unit`.
    public func servingSource(unit: String) async throws -> Data? {
        try await odb.pool.read { db in
            try Data.fetchOne(db, sql: """
                SELECT v.source FROM deployment_unit u JOIN deployment_version v
                ON v.unit = u.name AND v.version = u.serving_version WHERE u.name = ?
                """, arguments: [unit])
        }
    }

    /// How many versions of `unit` are kept.
    public func versionCount(unit: String) async throws -> Int {
        try await odb.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deployment_version WHERE unit = ?", arguments: [unit]) ?? 0
        }
    }
}
