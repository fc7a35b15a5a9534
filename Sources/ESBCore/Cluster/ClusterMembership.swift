import ESBConcurrency
import ESBConfig
import ESBStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// This server's place in its cluster: it holds the server's name for as long as it runs,
/// renews its heartbeat (which is also its lease on the async work it claimed), and lists
/// the cluster's servers. On SQLite the cluster is this one server.
public final class ClusterMembership: ServiceLifecycle.Service, Sendable, CustomStringConvertible {
    public var description: String { "ClusterMembership" }
    /// This server's `[main] name`.
    public let name: String
    /// `[cluster] name`.
    public let cluster: String
    /// How long a silent server's claims stay its own.
    public let lease: Duration
    let records: any ClusterRecords
    private let logger: Logger
    private let address: Mutex<String>
    private let lastHeartbeat = Mutex<(ok: Bool, error: String?)>((true, nil))
    /// When a heartbeat last succeeded: one that hangs (a connection gone silent) shows in
    /// health once it is older than the lease, and the ODB stops this server's claims at half.
    private let lastRenewed = Mutex(ContinuousClock.now)
    /// Whether a heartbeat runs (it may outlive its deadline until its connection is closed).
    private let beating = Atomic<Bool>(false)

    /// The version a server records in the cluster.
    public static let version = "0.19.0"

    /// How often the heartbeat is renewed: three times per lease, so that one or two late or
    /// failed renewals do not lose it.
    public var heartbeatInterval: Duration { lease / 3 }
    /// The longest a stop waits to record itself in the ODB.
    static let leaveTimeout: Duration = .seconds(5)

    private init(records: any ClusterRecords, name: String, cluster: String, lease: Duration, address: String, logger: Logger) {
        self.records = records
        self.name = name
        self.cluster = cluster
        self.lease = lease
        self.address = Mutex(address)
        self.logger = logger
    }

    /// The migration that creates `esb_server`.
    public static let table = ODBMigration(
        "v7-cluster", sqlite: SQLiteClusterRecords.createTable, postgresql: PostgresClusterRecords.createTable)

    /// Joins the cluster of `odb` as `[main] name`: takes the name (held until the process
    /// ends) and records the start.
    /// - Throws: ``StoreError/Cause/refused`` when another live server holds the name or the
    ///   SQLite file, or when the ODB belongs to a cluster of another name.
    public static func join(odb: ODB, name: String, cluster: ServerConfig.Cluster, address: String,
                            logger: Logger) async throws(StoreError) -> ClusterMembership {
        let records = makeRecords(odb)
        try await records.join(name: name, cluster: cluster.name, address: address, version: version)
        return ClusterMembership(records: records, name: name, cluster: cluster.name, lease: .seconds(cluster.leaseSeconds),
                                 address: address, logger: logger)
    }

    /// Holds `odb` for `job`, work done while no server runs on it (`esb odb copy`). A
    /// server seen within `recentlySeen` that recorded no clean stop counts as running (its
    /// connection holding the name may have broken; it serves until it takes it again).
    /// - Throws: ``StoreError/Cause/refused`` naming the running servers while any runs.
    public static func holdWithNoServer(odb: ODB, for job: String,
                                        recentlySeen: Duration = .seconds(60)) async throws(StoreError) -> ODBHold {
        let records = makeRecords(odb)
        try await records.holdWithNoServer(for: job, recentlySeen: recentlySeen)
        return ODBHold(records: records)
    }

    private static func makeRecords(_ odb: ODB) -> any ClusterRecords {
        switch odb.connection {
        case .sqlite(let pool): SQLiteClusterRecords(pool: pool, path: odb.location)
        case .postgresql(let postgres): PostgresClusterRecords(odb: postgres)
        }
    }

    /// Keeps servers from starting on an ODB until released or dropped
    /// (``holdWithNoServer(odb:for:recentlySeen:)``): a SQLite file's lock, PostgreSQL's ODB lock.
    public struct ODBHold: Sendable {
        let records: any ClusterRecords

        /// Lets servers start on the ODB again.
        public func release() async { await records.leave() }
    }

    /// Where this server listens, once the listener is bound (the next heartbeat records it).
    public func listening(at address: String) {
        self.address.withLock { $0 = address }
    }

    /// Renews the heartbeat until shutdown, then records the clean stop and lets the name go.
    public func run() async throws {
        let lost = await cancelWhenGracefulShutdown { [self] () async -> StoreError? in
            while !Task.isCancelled {
                if let lost = await beat() { return lost }
                try? await Task.sleep(for: heartbeatInterval)
            }
            return nil
        }
        // Bounded: a stop must not wait on an ODB that does not answer (the lease covers it).
        let records = records
        _ = try? await withDeadline(Self.leaveTimeout) { await records.leave() }
        // Another process holds this server's name now (it started while the connection that
        // held the name was lost): two servers must not serve as one. Stopping with an error
        // stops the server; systemd's restart is then refused while the other holds the name.
        if let lost {
            logger.critical("stopping: \(lost)")
            throw lost
        }
    }

    /// Renews the heartbeat once; returns the refusal when another process holds the name.
    @discardableResult
    func beat() async -> StoreError? {
        do {
            // One heartbeat at a time: a beat still stuck when the next is due is ended by closing
            // its connection (a query on a dropped connection was seen never to return).
            guard !beating.exchange(true, ordering: .relaxed) else {
                await records.dropSession()
                throw StoreError(.unavailable, "the last heartbeat got no answer; its connection was closed")
            }
            let address = address.withLock { $0 }
            try await withDeadline(heartbeatInterval) { [self] in
                defer { beating.store(false, ordering: .relaxed) }
                try await records.heartbeat(address: address)
            }
            lastRenewed.withLock { $0 = .now }
            let recovered = lastHeartbeat.withLock { state in
                defer { state = (true, nil) }
                return !state.ok
            }
            if recovered { logger.notice("cluster heartbeat renewed again") }
            return nil
        } catch let error as StoreError where error.cause == .refused {
            return error
        } catch {
            let message = StoreError.describe(error)
            let first = lastHeartbeat.withLock { state in
                defer { state = (false, message) }
                return state.ok
            }
            if first {
                logger.error("cannot renew the cluster heartbeat; past [cluster] lease_seconds the other servers take this server's async work over",
                             metadata: ["esb.error": "\(message)"])
            }
            return nil
        }
    }

    /// The cluster's servers, by name.
    public func servers() async throws -> [ClusterServer] {
        try await records.servers(leaseMS: Int64(lease.components.seconds) * 1000)
    }

    /// The cluster as `/esb/health` shows it.
    public func health() async -> [String: HealthReport.Component] {
        let heartbeat = lastHeartbeat.withLock { $0 }
        let silent = ContinuousClock.now - lastRenewed.withLock { $0 }
        if heartbeat.ok, silent > lease {
            return ["cluster": .init(status: .degraded, detail: "cluster '\(cluster)': no heartbeat renewed for \(silent.components.seconds) s "
                + "(the ODB does not answer); the other servers take this server's async work over")]
        }
        guard heartbeat.ok else {
            return ["cluster": .init(status: .degraded, detail: "cluster '\(cluster)': heartbeat failing: \(heartbeat.error ?? "")")]
        }
        do {
            let servers = try await servers()
            let up = servers.filter { $0.status == .up }.map(\.name)
            return ["cluster": .init(status: .ok, detail: "cluster '\(cluster)': \(up.count) of \(servers.count) servers up (\(up.joined(separator: ", ")))",
                                     cluster: .init(name: cluster, up: up, servers: servers.count))]
        } catch {
            return ["cluster": .init(status: .degraded, detail: "cluster '\(cluster)': \(StoreError.describe(error))")]
        }
    }
}
