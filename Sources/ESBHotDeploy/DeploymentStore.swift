import ESBConcurrency
import ESBStore
import Foundation
import Logging

/// What a deployment unit is: a service file, or a library in `pickup/lib/NAME`.
public enum UnitKind: String, Sendable, Codable, CaseIterable {
    case service, library
}

/// Where a unit stands.
public enum UnitStatus: String, Sendable, Codable, CaseIterable {
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
    let records: any DeploymentRecords
    /// This server's `[main] name`.
    public let server: String

    /// The registry as server `server` (its `[main] name`) sees it: on a shared ODB, whether
    /// the last run ended cleanly is recorded per server.
    public init(odb: ODB, server: String = "") {
        switch odb.connection {
        case .sqlite(let pool): records = SQLiteDeploymentRecords(pool: pool)
        case .postgresql(let postgres): records = PostgresDeploymentRecords(odb: postgres, server: server)
        }
        self.server = server
    }

    /// How a unit stands on one server of the cluster.
    public struct ServerStatus: Sendable, Codable, Equatable {
        /// The server's `[main] name`.
        public var name: String
        /// `deployed` when the unit's serving version serves there, `failed` when it could
        /// not be built or loaded there (an earlier version may serve), `quarantined`.
        public var status: UnitStatus
        public var error: String?
        /// The hash of the version this status is about.
        public var hash: String?
    }

    /// Who else may deploy: the other servers' deployments, spread by the ODB.
    public static let clusterTables = ODBMigration(
        "v9-cluster-deployments", sqlite: SQLiteDeploymentRecords.createClusterTables,
        postgresql: PostgresDeploymentRecords.createClusterTables)

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
        /// How it stands on each server of the cluster (on SQLite, the one server).
        public var servers: [ServerStatus] = []
    }

    /// The registry's tables.
    public static let tables = ODBMigration(
        "v2-deployments", sqlite: SQLiteDeploymentRecords.createTables, postgresql: PostgresDeploymentRecords.createTables)

    /// What each version imports.
    public static let importsColumn = ODBMigration(
        "v6-library-imports", sqlite: SQLiteDeploymentRecords.addImportsColumn, postgresql: PostgresDeploymentRecords.addImportsColumn)

    /// How many crashes in a row quarantine a unit.
    public static let quarantineAfterCrashes = 3

    /// Crashes in a row per unit.
    public static let crashCountColumn = ODBMigration(
        "v4-crash-tracking", sqlite: SQLiteDeploymentRecords.addCrashCountColumn, postgresql: PostgresDeploymentRecords.addCrashCountColumn)

    /// Marks a run as started. When the previous run never reached ``endRun()`` it crashed:
    /// every unit that had a call in flight at that moment (`inFlight`, from the
    /// ``InFlightLedger``) counts one more crash, and units at ``quarantineAfterCrashes`` are
    /// quarantined. A crash with nothing in flight (an OOM kill of an idle server) counts
    /// against no unit. Returns the units quarantined now.
    public func beginRun(inFlight: Set<String>) async throws -> [String] {
        try await records.beginRun(inFlight: inFlight, quarantineAfter: Self.quarantineAfterCrashes)
    }

    /// Marks a clean stop: crash counts start again from zero.
    /// Gives up after 5 s: a stop must not wait on an ODB that does not answer (the next
    /// start then takes the stop for a crash, which counts only units with a call in flight).
    public func endRun() async throws {
        let records = records
        try await withDeadline(.seconds(5)) { try await records.endRun() }
    }

    /// Records a version that now serves; keeps at most `keep` older versions.
    @discardableResult
    public func recordDeployed(unit: String, kind: UnitKind, hash: String, source: Data, services: [String],
                               imports: [String] = [], keep: Int) async throws -> Int {
        try await records.recordDeployed(
            Version(unit: unit, kind: kind, hash: hash, source: source, services: services, imports: imports.sorted(),
                    status: .deployed, error: nil),
            keep: keep)
    }

    /// Records a failed attempt; a version that was serving stays recorded as serving.
    public func recordFailed(unit: String, kind: UnitKind, hash: String, source: Data, error: String) async throws {
        try await records.recordFailed(
            Version(unit: unit, kind: kind, hash: hash, source: source, services: [], imports: [], status: .failed, error: error))
    }

    /// One version of a unit, as recorded.
    struct Version: Sendable {
        var unit: String
        var kind: UnitKind
        var hash: String
        var source: Data
        var services: [String]
        var imports: [String]
        var status: UnitStatus
        var error: String?
    }

    /// Every unit, oldest first (the order a restart redeploys them in).
    public func units() async throws -> [Unit] {
        var units = try await records.units().map { row in
            // A value this server does not know (written by a newer one) is named, not a crash.
            guard let kind = UnitKind(rawValue: row.kind), let status = UnitStatus(rawValue: row.status) else {
                throw StoreError("ODB: deployment unit '\(row.name)' has kind '\(row.kind)' and status '\(row.status)'; this server knows kinds \(UnitKind.allCases.map(\.rawValue)) and statuses \(UnitStatus.allCases.map(\.rawValue))")
            }
            return Unit(name: row.name, kind: kind, status: status, hash: row.hash, version: row.version,
                        services: row.services, error: row.error, imports: row.imports,
                        updatedAt: row.updatedAt, createdAt: row.createdAt)
        }
        let statuses = try await records.serverStatuses()
        for index in units.indices {
            let unit = units[index]
            // A unit no server recorded a status for (SQLite's one server; a unit deployed
            // before the cluster): its own status is this server's.
            units[index].servers = statuses[unit.name]
                ?? [ServerStatus(name: server, status: unit.status, error: unit.error, hash: unit.hash)]
        }
        for index in units.indices where units[index].kind == .library {
            let module = Self.moduleName(ofLibraryUnit: units[index].name)
            units[index].dependents = units.filter { $0.imports.contains(module) }.map(\.name)
        }
        return units
    }

    /// `lib/NAME` → `NAME`.
    public static func moduleName(ofLibraryUnit unit: String) -> String {
        unit.hasPrefix("lib/") ? String(unit.dropFirst(4)) : unit
    }

    /// The source of the version serving `unit`.
    public func servingSource(unit: String) async throws -> Data? {
        try await records.serving(unit: unit)?.source
    }

    /// The serving version's source, and when it was recorded (deployed here or on another server).
    public func serving(unit: String) async throws -> (source: Data, recordedAt: Date)? {
        try await records.serving(unit: unit)
    }

    /// Records how `unit` (version `hash`) stands on this server.
    public func recordOnThisServer(unit: String, hash: String, status: UnitStatus, error: String?) async throws {
        try await records.recordOnThisServer(unit: unit, hash: hash, status: status, error: error)
    }

    /// The library another server built under `key`, if the ODB has it.
    public func sharedArtifact(key: String) async throws -> Data? {
        try await records.sharedArtifact(key: key)
    }

    /// Offers the library built under `key` to the other servers.
    public func shareArtifact(key: String, library: Data) async throws {
        try await records.shareArtifact(key: key, library: library)
    }

    /// Hears the units other servers deploy until the task is cancelled (`nil`: check them all).
    public func followOtherServers(logger: Logger, deployed: @escaping @Sendable (String?) async -> Void) async {
        await records.followOtherServers(logger: logger, deployed: deployed)
    }

    /// How many versions of `unit` are kept.
    public func versionCount(unit: String) async throws -> Int {
        try await records.versionCount(unit: unit)
    }
}
