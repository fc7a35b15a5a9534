/// What ``AsyncStore`` needs from the ODB, whatever the engine: the `async_invocation`
/// table. Each engine implements it once (``SQLiteAsyncRecords``).
///
/// It assumes one server per ODB: ``recover(now:)`` takes back every running step. Servers
/// sharing an ODB need a claim that names its owner and expires (a lease), so that only a
/// dead server's steps are taken back; that adds to these methods, it does not replace them.
protocol AsyncRecords: Sendable {
    /// Stores a new record; returns once it is committed.
    func insert(_ record: AsyncRecord) async throws
    /// Stores a record's new state; returns once it is committed.
    func update(_ record: AsyncRecord) async throws
    /// Takes up to `limit` records due at `now`, earliest first, and stores them claimed
    /// (``AsyncRecord/claim(now:)``), in one transaction: no record is claimed twice.
    func claimDue(now: Int64, limit: Int) async throws -> [AsyncRecord]
    /// The earliest `nextRunAt`, if a record waits.
    func nextDue() async throws -> Int64?
    /// Makes every running attempt and callback due at `now`, counting an interruption.
    func recover(now: Int64) async throws -> (attempts: Int, callbacks: Int)
    /// Deletes finished records (attempts done or failed, callback none or delivered) that
    /// finished before `cutoff`.
    func prune(finishedBefore cutoff: Int64) async throws -> Int
    func record(cid: String) async throws -> AsyncRecord?
    /// How many records are in each status (every status present, zero when none).
    func counts() async throws -> [AsyncRecord.Status: Int]
}
