import ESBStore
import Foundation
import Logging

/// What ``DeploymentStore`` needs from the ODB, whatever the engine: the `deployment_unit`
/// and `deployment_version` tables and the run marker. Each engine implements it once
/// (``SQLiteDeploymentRecords``, ``PostgresDeploymentRecords``); each method is one transaction.
protocol DeploymentRecords: Sendable {
    /// Marks a run as started. When the previous run was still marked as running, every unit
    /// of `inFlight` that has a serving version and is not quarantined counts one more crash,
    /// and every unit at `quarantineAfter` crashes is quarantined with an error saying so.
    /// Returns the units quarantined now.
    func beginRun(inFlight: Set<String>, quarantineAfter: Int) async throws -> [String]
    /// Marks a clean stop and sets every crash count to zero.
    func endRun() async throws
    /// Adds `version` as the unit's next version (creating the unit), makes it the serving
    /// one with no error and no crashes, and keeps only it and the `keep` newest before it.
    func recordDeployed(_ version: DeploymentStore.Version, keep: Int) async throws -> Int
    /// Adds `version` as a failed one and marks the unit failed with its error; the serving
    /// version stays.
    func recordFailed(_ version: DeploymentStore.Version) async throws
    /// Every unit, oldest first (then by name), with its serving version's hash, services
    /// and imports; kind and status as stored.
    func units() async throws -> [StoredUnit]
    /// The serving version's source, and when it was recorded.
    func serving(unit: String) async throws -> (source: Data, recordedAt: Date)?
    func versionCount(unit: String) async throws -> Int

    /// Records how the unit stands on this server (each server of a cluster deploys it itself).
    func recordOnThisServer(unit: String, hash: String, status: UnitStatus, error: String?) async throws
    /// Every unit's status on each server, by unit, servers by name.
    func serverStatuses() async throws -> [String: [DeploymentStore.ServerStatus]]
    /// The built library stored under `key` by another server of the cluster, if any.
    func sharedArtifact(key: String) async throws -> Data?
    /// Stores a built library under `key` for the other servers of the cluster.
    func shareArtifact(key: String, library: Data) async throws
    /// Hears the units other servers deployed, until the task is cancelled; `nil` when
    /// deployments may have been missed (every unit should be checked). Returns at once
    /// where no other server can deploy (SQLite).
    func followOtherServers(logger: Logger, deployed: @escaping @Sendable (String?) async -> Void) async
}

/// A unit as the ODB holds it, before its kind and status are checked.
struct StoredUnit: Sendable {
    var name: String
    var kind: String
    var status: String
    var hash: String?
    var version: Int?
    var services: [String]
    var imports: [String]
    var error: String?
    var createdAt: Date
    var updatedAt: Date

    /// A stored JSON list of strings (services, imports); one the server cannot read is
    /// named, not taken for an empty one.
    static func list(_ text: String?, _ column: String, _ unit: String) throws -> [String] {
        guard let text else { return [] }
        do {
            return try JSONDecoder().decode([String].self, from: Data(text.utf8))
        } catch {
            throw StoreError("ODB: deployment unit '\(unit)': \(column) is not a JSON list of strings")
        }
    }
}
