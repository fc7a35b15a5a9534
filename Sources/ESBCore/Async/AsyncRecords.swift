/// What ``AsyncStore`` needs from the ODB, whatever the engine: the `async_invocation`
/// table. Each engine implements it once (``SQLiteAsyncRecords``).
///
/// On a shared ODB a claim names its server and lasts as long as that server's heartbeat:
/// ``recover(now:)`` takes back this server's claims at start, ``takeOver(now:leaseMS:)``
/// those of servers that stopped or went silent. A SQLite ODB has one server: it recovers
/// every claim and has no one to take over from.
protocol AsyncRecords: Sendable {
    /// Stores a new record; returns once it is committed.
    func insert(_ record: AsyncRecord) async throws
    /// Stores a record's new state; returns once it is committed.
    func update(_ record: AsyncRecord) async throws
    /// Takes up to `limit` records due at `now`, earliest first, and stores them claimed
    /// (``AsyncRecord/claim(now:)``), in one transaction: no record is claimed twice. With
    /// `services`, only records whose due step calls one of them (the target for an attempt,
    /// the callback for a callback) on a shared ODB, where each server takes the work of the
    /// services it has deployed; a SQLite ODB has one server, which takes everything.
    func claimDue(now: Int64, limit: Int, services: [String]?) async throws -> [AsyncRecord]
    /// The earliest `nextRunAt`, if a record waits (of those ``claimDue(now:limit:services:)``
    /// would take).
    func nextDue(services: [String]?) async throws -> Int64?
    /// Makes this server's running attempts and callbacks (from a run that ended) due at
    /// `now`, counting an interruption.
    func recover(now: Int64) async throws -> (attempts: Int, callbacks: Int)
    /// While this server runs: makes its running attempts and callbacks that no task runs
    /// (`running` lists those that do) due at `now`, counting an interruption. For claims a
    /// timed-out `claimDue` may have committed after the scheduler stopped waiting for it.
    func releaseStranded(now: Int64, running: [String]) async throws -> (attempts: Int, callbacks: Int)
    /// Makes the running attempts and callbacks of servers that stopped, or have not renewed
    /// their heartbeat within `leaseMS`, due at `now`, counting an interruption.
    func takeOver(now: Int64, leaseMS: Int64) async throws -> (attempts: Int, callbacks: Int)
    /// Deletes finished records (attempts done or failed, callback none or delivered) that
    /// finished before `cutoff`.
    func prune(finishedBefore cutoff: Int64) async throws -> Int
    func record(cid: String) async throws -> AsyncRecord?
    /// Up to `limit` records with work left (an attempt or a callback pending or running),
    /// by cid, after `cid` when one is given: every one, page by page, for `esb odb copy`.
    func unfinished(after cid: String?, limit: Int) async throws -> [AsyncRecord]
    /// How many records are in each status (every status present, zero when none).
    /// How many records are in each of `statuses`.
    func counts(_ statuses: [AsyncRecord.Status]) async throws -> [AsyncRecord.Status: Int]
}

extension AsyncRecords {
    /// How many records are in each status.
    func counts() async throws -> [AsyncRecord.Status: Int] {
        try await counts(AsyncRecord.Status.allCases)
    }

    func claimDue(now: Int64, limit: Int) async throws -> [AsyncRecord] {
        try await claimDue(now: now, limit: limit, services: nil)
    }

    func nextDue() async throws -> Int64? {
        try await nextDue(services: nil)
    }
}

/// Another server of the cluster took the record over (this one was silent past the lease):
/// this server's outcome for it is dropped; the new owner runs it.
struct AsyncClaimLost: Error, CustomStringConvertible {
    var cid: String
    var description: String { "async invocation '\(cid)' was taken over by another server" }
}
