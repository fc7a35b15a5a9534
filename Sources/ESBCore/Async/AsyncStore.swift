import ESBConcurrency
import ESBStore
import Foundation

/// Durable async invocations in the ODB. A record is committed before its cid is returned:
/// after a crash or restart every accepted invocation and callback is still there. The
/// engine's ``AsyncRecords`` hold the table; this store adds the metrics and wakes the
/// scheduler.
public final class AsyncStore: Sendable {
    let records: any AsyncRecords
    /// Rung when work may have become due (an accept); the scheduler waits on it.
    let doorbell = Doorbell()
    let metrics = AsyncMetrics()

    /// How long a silent server's claims stay its own (`[cluster] lease_seconds`).
    let lease: Duration

    /// The services deployed on this server, on a shared ODB: it takes only their work.
    let deployedServices: (@Sendable () -> [String])?

    /// The store of server `server` (its `[main] name`, written into its claims on a shared
    /// ODB). With `deployedServices`, the server claims only work whose service it has.
    public init(odb: ODB, server: String, lease: Duration = .seconds(30),
                deployedServices: (@Sendable () -> [String])? = nil) {
        self.deployedServices = deployedServices
        switch odb.connection {
        case .sqlite(let pool): records = SQLiteAsyncRecords(pool: pool)
        case .postgresql(let postgres):
            records = PostgresAsyncRecords(odb: postgres, server: server, leaseMS: Int64(lease.components.seconds) * 1000)
        }
        self.lease = lease
    }

    /// The invocations' table.
    public static let table = ODBMigration(
        "v5-async", sqlite: SQLiteAsyncRecords.createTable, postgresql: PostgresAsyncRecords.createTable)
    /// Who claimed a running step (PostgreSQL; a SQLite ODB has one server).
    public static let claimColumn = ODBMigration(
        "v8-async-claims", sqlite: { _ in }, postgresql: PostgresAsyncRecords.claimColumn)

    /// Stores a new record; returns once it is committed, then wakes the scheduler.
    func accept(_ record: AsyncRecord) async throws {
        try await records.insert(record)
        metrics.accepted.increment()
        doorbell.ring()
    }

    /// The longest the scheduler waits for one ODB call. A call on a connection PostgreSQL
    /// dropped at the wrong moment was seen to never return (R19); past this the scheduler
    /// goes on (a step's outcome is saved again, due work is read again) instead of waiting
    /// with its slots full.
    static let schedulerCallTimeout: Duration = .seconds(30)

    /// Stores a record's new state.
    func update(_ record: AsyncRecord) async throws {
        let records = records
        try await withDeadline(Self.schedulerCallTimeout) { try await records.update(record) }
    }

    /// Whether this server runs work of `service` (on a shared ODB, only where it is deployed).
    func runsHere(_ service: String?) -> Bool {
        guard let deployedServices, let service else { return true }
        return deployedServices().contains(service)
    }

    /// Takes up to `limit` records due at `now`, earliest first, and marks them claimed.
    func claimDue(now: Int64, limit: Int) async throws -> [AsyncRecord] {
        let records = records, services = deployedServices?()
        return try await withDeadline(Self.schedulerCallTimeout) {
            try await records.claimDue(now: now, limit: limit, services: services)
        }
    }

    /// When the next record is due, if any is waiting.
    func nextDue() async throws -> Int64? {
        let records = records, services = deployedServices?()
        return try await withDeadline(Self.schedulerCallTimeout) { try await records.nextDue(services: services) }
    }

    /// After a crash or restart: steps that were running are due again (a callback that had
    /// been handed over will say `redelivered`). Returns how many attempts and callbacks.
    func recover(now: Int64) async throws -> (attempts: Int, callbacks: Int) {
        try await records.recover(now: now)
    }

    /// This server's claims that no task of `running` runs are due again (after a `claimDue`
    /// that timed out may have committed late).
    func releaseStranded(now: Int64, running: [String]) async throws -> (attempts: Int, callbacks: Int) {
        let records = records
        return try await withDeadline(Self.schedulerCallTimeout) { try await records.releaseStranded(now: now, running: running) }
    }

    /// Other servers' work whose lease ran out (they stopped or went silent) is due again
    /// here. Returns how many attempts and callbacks.
    func takeOver(now: Int64) async throws -> (attempts: Int, callbacks: Int) {
        let records = records, leaseMS = Int64(lease.components.seconds) * 1000
        return try await withDeadline(Self.schedulerCallTimeout) { try await records.takeOver(now: now, leaseMS: leaseMS) }
    }

    /// Deletes finished records that finished before `cutoff`; returns how many.
    func prune(finishedBefore cutoff: Int64) async throws -> Int {
        try await records.prune(finishedBefore: cutoff)
    }

    /// The record of `cid`, if it exists (not yet pruned).
    public func record(cid: String) async throws -> AsyncRecord? {
        try await records.record(cid: cid)
    }

    /// How many records are in each status.
    func counts(_ statuses: [AsyncRecord.Status] = AsyncRecord.Status.allCases) async throws -> [AsyncRecord.Status: Int] {
        try await records.counts(statuses)
    }
}
