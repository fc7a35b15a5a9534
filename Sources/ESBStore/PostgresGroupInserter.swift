import Logging
import PostgresNIO
import Synchronization

/// Inserts rows into one PostgreSQL table in group commits: rows that arrive while a batch
/// is being written wait, then up to `batchRows` of them go into the next batch as one
/// multi-row `INSERT` (one statement, one commit).
///
/// PostgreSQL already merges the WAL flushes of concurrent commits; what a batch saves is
/// the round trip, the statement and the commit record per row, which is what lets durable
/// async acceptance keep up with many callers on a pool of a few connections (the
/// PostgreSQL counterpart of ``SQLiteGroupCommitter``). Each caller returns once its row is
/// committed. A batch that failed is judged by what is known of it:
/// - never sent (no connection): every row fails with that, at once;
/// - refused by the server (nothing of it committed): its rows are inserted again one by
///   one, so that a bad row fails alone;
/// - sent and not answered (a broken connection): it is sent again once with
///   `ON CONFLICT (key) DO NOTHING`, so that the rows the lost batch committed count as
///   committed and the others are inserted now (keys are random: a row already there is
///   the batch's own).
public final class PostgresGroupInserter: Sendable {
    /// Appends one row's values, exactly `columns.count` of them, to the statement's binds.
    public typealias Row = @Sendable (inout PostgresBindings) -> Void

    private let odb: PostgresODB
    private let table: String
    private let columns: [String]
    private let conflictKey: String
    private let batchRows: Int
    private let writers: Int
    private let queue = Mutex<Queue>(Queue())

    private struct Queue {
        var jobs: [Job] = []
        var writing = 0
    }

    private struct Job: Sendable {
        var row: Row
        /// The row's size in bytes, about (its large values).
        var bytes: Int
        var continuation: CheckedContinuation<Void, any Error>
        /// When it was queued: a row no writer took for ``maximumWait`` fails, never sent.
        var queued = ContinuousClock.now
    }

    /// The longest a row waits for a writer (PostgreSQL away: every writer waits its lease).
    static let maximumWait = PostgresODB.leaseTimeout * 2

    /// The most bytes one batch carries (a row larger than this goes alone).
    static let batchBytes = 8 << 20
    /// The most rows waiting: past it an insert fails at once as unavailable (the ODB does
    /// not keep up, or does not answer) instead of queueing without bound.
    static let maximumWaiting = 20_000

    /// - Parameters:
    ///   - table: the table, as SQL (a trusted identifier, never user input).
    ///   - columns: its columns the rows fill, as SQL.
    ///   - conflictKey: its unique key, whose values are random (`ON CONFLICT` after a lost answer).
    ///   - batchRows: the most rows one statement inserts (PostgreSQL takes at most 65,535
    ///     parameters in one statement).
    ///   - writers: the most batches written at once (each on its own pooled connection).
    public init(odb: PostgresODB, table: String, columns: [String], conflictKey: String, batchRows: Int = 256, writers: Int = 2) {
        precondition(!columns.isEmpty && batchRows * columns.count <= Int(UInt16.max), "a batch must fit one statement's parameters")
        self.odb = odb
        self.table = table
        self.columns = columns
        self.conflictKey = conflictKey
        self.batchRows = max(1, batchRows)
        self.writers = max(1, writers)
    }

    /// Inserts the row `row` appends in the next batch; returns once it is committed.
    /// - Parameter bytes: the row's size, about (the sum of its large values).
    /// - Throws: the error of the statement that carried the row; ``StoreError/Cause/unavailable``
    ///   at once when ``maximumWaiting`` rows already wait.
    public func insert(bytes: Int, _ row: @escaping Row) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let start = queue.withLock { queue -> Bool? in
                guard queue.jobs.count < Self.maximumWaiting else { return nil }
                queue.jobs.append(Job(row: row, bytes: bytes, continuation: continuation))
                guard queue.writing < writers else { return false }
                queue.writing += 1
                return true
            }
            switch start {
            case nil:
                continuation.resume(throwing: StoreError(
                    .unavailable, "[odb] \(odb.settings): \(Self.maximumWaiting) rows already wait to be written into \(table)"))
            case true?: Task { await self.write() }
            case false?: break
            }
        }
    }

    /// One writer: takes the waiting rows, a batch at a time, until none waits.
    private func write() async {
        while true {
            let batch = queue.withLock { queue -> [Job] in
                var count = 0, bytes = 0
                while count < min(batchRows, queue.jobs.count), count == 0 || bytes + queue.jobs[count].bytes <= Self.batchBytes {
                    bytes += queue.jobs[count].bytes
                    count += 1
                }
                let batch = Array(queue.jobs.prefix(count))
                queue.jobs.removeFirst(count)
                if batch.isEmpty { queue.writing -= 1 }
                return batch
            }
            guard !batch.isEmpty else { return }
            await write(batch)
        }
    }

    private func write(_ batch: [Job]) async {
        // Rows that waited too long for a writer fail, never sent.
        let now = ContinuousClock.now
        var carried: [Job] = []
        carried.reserveCapacity(batch.count)
        for job in batch {
            if now - job.queued > Self.maximumWait {
                job.continuation.resume(throwing: StoreError(
                    .unavailable, "[odb] \(odb.settings): not written into \(table) within \(Self.maximumWait) (PostgreSQL does not keep up or answer)"))
            } else {
                carried.append(job)
            }
        }
        guard let bindings = bind(&carried) else { return }
        do {
            try await odb.execute(statement(rows: carried.count, binds: bindings), logger: odb.logger)
            for job in carried { job.continuation.resume() }
        } catch {
            switch Self.judge(error) {
            case .neverSent:
                for job in carried { job.continuation.resume(throwing: error) }
            case .refused where carried.count == 1:
                carried[0].continuation.resume(throwing: error)
            case .refused:
                await insertOneByOne(carried)
            case .unknown:
                // Sent again once: rows the lost batch committed are there and skipped.
                do {
                    try await odb.execute(statement(rows: carried.count, binds: bindings, skippingExisting: true), logger: odb.logger)
                    for job in carried { job.continuation.resume() }
                } catch {
                    // Whatever stopped the second send, the first may have committed.
                    let unknown = Self.outcomeUnknown(error)
                    for job in carried { job.continuation.resume(throwing: unknown) }
                }
            }
        }
    }

    /// The binds of `jobs`' rows; a row of the wrong width fails alone and leaves `jobs`.
    private func bind(_ jobs: inout [Job]) -> PostgresBindings? {
        var bindings = PostgresBindings(capacity: jobs.count * columns.count)
        var index = 0
        while index < jobs.count {
            let before = bindings.count
            jobs[index].row(&bindings)
            if bindings.count - before == columns.count {
                index += 1
                continue
            }
            let wrong = jobs.remove(at: index)
            wrong.continuation.resume(throwing: StoreError(
                "ODB: a row for \(table) has \(bindings.count - before) values for \(columns.count) columns"))
            bindings = PostgresBindings(capacity: jobs.count * columns.count)
            for job in jobs[..<index] { job.row(&bindings) }
        }
        return jobs.isEmpty ? nil : bindings
    }

    /// What is known of a statement that failed.
    enum Judgement: Equatable {
        /// No connection came: nothing was sent.
        case neverSent
        /// The server answered with an error: nothing of it committed.
        case refused
        /// Sent, and the answer was lost (or came after the connection broke): it may have committed.
        case unknown
    }

    static func judge(_ error: any Error) -> Judgement {
        if let error = error as? StoreError {
            return error.cause == .unavailable && !error.outcomeUnknown ? .neverSent : .unknown
        }
        // The pool's own refusal (it cannot open connections): nothing was sent.
        if String(describing: type(of: error)) == "ConnectionPoolError" { return .neverSent }
        guard let state = (error as? PSQLError)?.serverInfo?[.sqlState] else { return .unknown }
        // A connection ended by the server (shutdown, crash) may end after a commit.
        return state.hasPrefix("57P0") || state.hasPrefix("08") ? .unknown : .refused
    }

    /// Each row of a refused batch alone, so that only a bad row fails; once PostgreSQL cannot
    /// be reached, the rows left fail at once, never sent.
    private func insertOneByOne(_ jobs: [Job]) async {
        var unreachable = false
        for job in jobs {
            if unreachable {
                job.continuation.resume(throwing: StoreError(
                    .unavailable, "[odb] \(odb.settings): PostgreSQL could not be reached; not written into \(table)"))
                continue
            }
            var row = PostgresBindings(capacity: columns.count)
            job.row(&row)
            do {
                try await odb.execute(statement(rows: 1, binds: row), logger: odb.logger)
                job.continuation.resume()
            } catch {
                job.continuation.resume(throwing: Self.judge(error) == .unknown ? Self.outcomeUnknown(error) : error)
                if StoreError.unreachable(error) != nil { unreachable = true }
            }
        }
    }

    /// `error` as an unavailable ODB with an unknown outcome: the row may have been stored.
    static func outcomeUnknown(_ error: any Error) -> StoreError {
        var unknown = StoreError(.unavailable, StoreError.describe(error))
        unknown.outcomeUnknown = true
        return unknown
    }

    /// `INSERT INTO table(columns) VALUES ($1, …), (…)` for `rows` rows (`skippingExisting`:
    /// `ON CONFLICT (key) DO NOTHING`).
    private func statement(rows: Int, binds: PostgresBindings, skippingExisting: Bool = false) -> PostgresQuery {
        var sql = "INSERT INTO \(table)(\(columns.joined(separator: ", "))) VALUES "
        sql.reserveCapacity(sql.utf8.count + rows * columns.count * 7)
        var parameter = 1
        for rowIndex in 0..<rows {
            sql += rowIndex == 0 ? "(" : ", ("
            for columnIndex in columns.indices {
                if columnIndex > 0 { sql += ", " }
                sql += "$\(parameter)"
                parameter += 1
            }
            sql += ")"
        }
        if skippingExisting { sql += " ON CONFLICT (\(conflictKey)) DO NOTHING" }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }
}
