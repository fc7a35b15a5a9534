import ESBStore
import Foundation
import Logging
import PostgresNIO

/// ``DeploymentRecords`` on PostgreSQL; each method is one transaction. A unit's row is
/// locked while a version is added, so two servers deploying one unit number their
/// versions one after another.
struct PostgresDeploymentRecords: DeploymentRecords {
    let odb: PostgresODB
    /// This server's name: each server of a cluster has its own run marker.
    let server: String
    /// Counts recorded deployments, for the followers' polling.
    let counter = ChangeCounter(key: "deployments_version")
    private var runKey: String { "running:\(server)" }

    /// Migration `v2-deployments`.
    static let createTables = [
        """
        CREATE TABLE deployment_unit (
          name text PRIMARY KEY, kind text NOT NULL, status text NOT NULL, serving_version bigint, error text,
          created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)
        """,
        """
        CREATE TABLE deployment_version (
          unit text NOT NULL REFERENCES deployment_unit(name) ON DELETE CASCADE, version bigint NOT NULL,
          hash text NOT NULL, source bytea NOT NULL, services text NOT NULL, status text NOT NULL, error text,
          created_at timestamptz NOT NULL, PRIMARY KEY (unit, version))
        """,
    ]
    /// Migration `v4-crash-tracking`.
    static let addCrashCountColumn = ["ALTER TABLE deployment_unit ADD COLUMN crash_count bigint NOT NULL DEFAULT 0"]
    /// Migration `v9-cluster-deployments`: each unit's status per server, and the libraries
    /// servers built, by cache key (source, modules, toolchain, SDK, plugin ABI), for the
    /// others to load instead of compiling.
    static let createClusterTables = [
        """
        CREATE TABLE deployment_server (unit text NOT NULL REFERENCES deployment_unit(name) ON DELETE CASCADE,
          server text NOT NULL, hash text, status text NOT NULL, error text, updated_at timestamptz NOT NULL,
          PRIMARY KEY (unit, server))
        """,
        "CREATE TABLE deployment_artifact (key text PRIMARY KEY, library bytea NOT NULL, created_at timestamptz NOT NULL)",
    ]

    /// The channel deployments are announced on: `server` and `unit`, one per line.
    static let channel = "esb_deployments"

    /// The largest built library shared through the ODB.
    static let maximumSharedArtifactBytes = 256 << 20

    /// Migration `v6-library-imports`.
    static let addImportsColumn = ["ALTER TABLE deployment_version ADD COLUMN imports text NOT NULL DEFAULT '[]'"]

    func beginRun(inFlight: Set<String>, quarantineAfter: Int) async throws -> [String] {
        try await odb.transaction { connection in
            let logger = odb.logger
            var running = false
            for try await value in try await connection.query("SELECT value FROM esb_meta WHERE key = \(runKey) FOR UPDATE", logger: logger).decode(String.self) {
                running = value == "1"
            }
            var quarantined: [String] = []
            if running {
                let status = UnitStatus.quarantined.rawValue
                for unit in inFlight.sorted() {
                    try await connection.run("""
                        UPDATE deployment_unit SET crash_count = crash_count + 1
                        WHERE name = \(unit) AND serving_version IS NOT NULL AND status != \(status)
                        """, logger: logger)
                }
                let limit = Int64(quarantineAfter)
                for try await name in try await connection.query("""
                    UPDATE deployment_unit SET status = \(status), updated_at = now(),
                      error = 'quarantined: it was running in ' || crash_count || ' crashes in a row; deploy it again to load it'
                    WHERE crash_count >= \(limit) AND status != \(status) RETURNING name
                    """, logger: logger).decode(String.self) {
                    quarantined.append(name)
                }
            }
            try await connection.run("""
                INSERT INTO esb_meta(key, value) VALUES (\(runKey), '1') ON CONFLICT (key) DO UPDATE SET value = '1'
                """, logger: logger)
            return quarantined.sorted()
        }
    }

    func endRun() async throws {
        try await odb.transaction { connection in
            try await connection.run("UPDATE esb_meta SET value = '0' WHERE key = \(runKey)", logger: odb.logger)
            try await connection.run("UPDATE deployment_unit SET crash_count = 0", logger: odb.logger)
        }
    }

    func recordDeployed(_ version: DeploymentStore.Version, keep: Int) async throws -> Int {
        let outcome = try await odb.transaction { connection in
            let number = try await insert(connection, version)
            let status = UnitStatus.deployed.rawValue
            let serving = Int64(number)
            try await connection.run("""
                UPDATE deployment_unit SET status = \(status), serving_version = \(serving), error = NULL, crash_count = 0,
                  updated_at = now() WHERE name = \(version.unit)
                """, logger: odb.logger)
            // Keep the serving version plus `keep` older ones.
            let kept = Int64(keep + 1)
            try await connection.run("""
                DELETE FROM deployment_version WHERE unit = \(version.unit) AND version NOT IN
                  (SELECT version FROM deployment_version WHERE unit = \(version.unit) ORDER BY version DESC LIMIT \(kept))
                """, logger: odb.logger)
            // Delivered at commit: the other servers deploy the new serving version.
            try await connection.run("SELECT pg_notify(\(Self.channel), \(server + "\n" + version.unit))", logger: odb.logger)
            return (number, try await counter.bump(on: connection, logger: odb.logger))
        }
        counter.committed(outcome.1)
        return outcome.0
    }

    func recordFailed(_ version: DeploymentStore.Version) async throws {
        try await odb.transaction { connection in
            _ = try await insert(connection, version)
            let status = UnitStatus.failed.rawValue
            try await connection.run("""
                UPDATE deployment_unit SET status = \(status), error = \(version.error), updated_at = now() WHERE name = \(version.unit)
                """, logger: odb.logger)
        }
    }

    /// Inserts the unit if new and `version` as its next version; returns the number.
    private func insert(_ connection: PostgresConnection, _ version: DeploymentStore.Version) async throws -> Int {
        let logger = odb.logger
        let now = Date()
        try await connection.run("""
            INSERT INTO deployment_unit(name, kind, status, created_at, updated_at)
            VALUES (\(version.unit), \(version.kind.rawValue), \(version.status.rawValue), \(now), \(now))
            ON CONFLICT (name) DO NOTHING
            """, logger: logger)
        try await connection.run("SELECT name FROM deployment_unit WHERE name = \(version.unit) FOR UPDATE", logger: logger)
        var number = 1
        for try await latest in try await connection.query(
            "SELECT MAX(version) FROM deployment_version WHERE unit = \(version.unit)", logger: logger).decode(Int64?.self) {
            number = Int(latest ?? 0) + 1
        }
        let servicesJSON = String(decoding: try JSONEncoder().encode(version.services), as: UTF8.self)
        let importsJSON = String(decoding: try JSONEncoder().encode(version.imports), as: UTF8.self)
        try await connection.run("""
            INSERT INTO deployment_version(unit, version, hash, source, services, imports, status, error, created_at)
            VALUES (\(version.unit), \(Int64(number)), \(version.hash), \(version.source), \(servicesJSON), \(importsJSON),
                    \(version.status.rawValue), \(version.error), \(now))
            """, logger: logger)
        return number
    }

    func units() async throws -> [StoredUnit] {
        let rows = try await odb.query("""
            SELECT u.name, u.kind, u.status, u.serving_version, u.error, u.created_at, u.updated_at,
                   v.hash, v.services, v.imports
            FROM deployment_unit u
            LEFT JOIN deployment_version v ON v.unit = u.name AND v.version = u.serving_version
            ORDER BY u.created_at, u.name
            """, logger: odb.logger)
        var units: [StoredUnit] = []
        for try await (name, kind, status, version, error, createdAt, updatedAt, hash, services, imports) in rows.decode(
            (String, String, String, Int64?, String?, Date, Date, String?, String?, String?).self) {
            units.append(StoredUnit(
                name: name, kind: kind, status: status, hash: hash, version: version.map(Int.init),
                services: try StoredUnit.list(services, "services", name), imports: try StoredUnit.list(imports, "imports", name),
                error: error, createdAt: createdAt, updatedAt: updatedAt))
        }
        return units
    }

    func serving(unit: String) async throws -> (source: Data, recordedAt: Date)? {
        for try await (source, recordedAt) in try await odb.query("""
            SELECT v.source, v.created_at FROM deployment_unit u JOIN deployment_version v
            ON v.unit = u.name AND v.version = u.serving_version WHERE u.name = \(unit)
            """, logger: odb.logger).decode((Data, Date).self) {
            return (source, recordedAt)
        }
        return nil
    }

    func versionCount(unit: String) async throws -> Int {
        for try await count in try await odb.query(
            "SELECT COUNT(*) FROM deployment_version WHERE unit = \(unit)", logger: odb.logger).decode(Int64.self) {
            return Int(count)
        }
        return 0
    }

    func recordOnThisServer(unit: String, hash: String, status: UnitStatus, error: String?) async throws {
        try await odb.execute("""
            INSERT INTO deployment_server(unit, server, hash, status, error, updated_at)
            SELECT \(unit), \(server), \(hash), \(status.rawValue), \(error), now() WHERE EXISTS (SELECT 1 FROM deployment_unit WHERE name = \(unit))
            ON CONFLICT (unit, server) DO UPDATE SET hash = excluded.hash, status = excluded.status, error = excluded.error,
              updated_at = excluded.updated_at
            """, logger: odb.logger)
    }

    func serverStatuses() async throws -> [String: [DeploymentStore.ServerStatus]] {
        var statuses: [String: [DeploymentStore.ServerStatus]] = [:]
        for try await (unit, server, hash, status, error) in try await odb.query("""
            SELECT unit, server, hash, status, error FROM deployment_server ORDER BY unit, server COLLATE "C"
            """, logger: odb.logger).decode((String, String, String?, String, String?).self) {
            guard let status = UnitStatus(rawValue: status) else {
                throw StoreError("ODB: deployment unit '\(unit)' on server '\(server)' has status '\(status)', which this server does not know")
            }
            statuses[unit, default: []].append(.init(name: server, status: status, error: error, hash: hash))
        }
        return statuses
    }

    func sharedArtifact(key: String) async throws -> Data? {
        // Not bounded like other reads: a library is up to maximumSharedArtifactBytes.
        for try await library in try await odb.client.query(
            "SELECT library FROM deployment_artifact WHERE key = \(key) AND length(library) <= \(Int64(Self.maximumSharedArtifactBytes))",
            logger: odb.logger).decode(Data.self) {
            return library
        }
        return nil
    }

    func shareArtifact(key: String, library: Data) async throws {
        guard library.count <= Self.maximumSharedArtifactBytes else { return }
        // Not bounded like other writes: a library is up to maximumSharedArtifactBytes.
        try await odb.client.query("""
            INSERT INTO deployment_artifact(key, library, created_at) VALUES (\(key), \(library), now()) ON CONFLICT (key) DO NOTHING
            """, logger: odb.logger)
    }

    func followOtherServers(logger: Logger, deployed: @escaping @Sendable (String?) async -> Void) async {
        await odb.follow(channel: Self.channel, what: "other servers' deployments", counter: counter,
                         listening: { await deployed(nil) }) { [server] payload in
            let lines = payload.split(separator: "\n", maxSplits: 1).map(String.init)
            guard lines.count == 2, lines[0] != server else { return }
            await deployed(lines[1])
        }
    }
}
