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
/// committed. When a batch fails, its rows are inserted again one by one, so a bad row fails
/// alone; when the batch's outcome is unknown (the connection broke before the reply), a
/// row that is then found already there counts as committed.
public final class PostgresGroupInserter: Sendable {
    /// Appends one row's values, exactly `columns.count` of them, to the statement's binds.
    public typealias Row = @Sendable (inout PostgresBindings) -> Void

    private let odb: PostgresODB
    private let table: String
    private let columns: [String]
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
    }

    /// The most bytes one batch carries (a row larger than this goes alone).
    static let batchBytes = 8 << 20
    /// The most rows waiting: past it an insert fails at once as unavailable (the ODB does
    /// not keep up, or does not answer) instead of queueing without bound.
    static let maximumWaiting = 20_000

    /// - Parameters:
    ///   - table: the table, as SQL (a trusted identifier, never user input).
    ///   - columns: its columns the rows fill, as SQL.
    ///   - batchRows: the most rows one statement inserts (PostgreSQL takes at most 65,535
    ///     parameters in one statement).
    ///   - writers: the most batches written at once (each on its own pooled connection).
    public init(odb: PostgresODB, table: String, columns: [String], batchRows: Int = 256, writers: Int = 2) {
        precondition(!columns.isEmpty && batchRows * columns.count <= Int(UInt16.max), "a batch must fit one statement's parameters")
        self.odb = odb
        self.table = table
        self.columns = columns
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
        var carried = batch
        var bindings = PostgresBindings(capacity: batch.count * columns.count)
        var index = 0
        while index < carried.count {
            let before = bindings.count
            carried[index].row(&bindings)
            if bindings.count - before == columns.count {
                index += 1
                continue
            }
            // A row of the wrong width fails alone; the statement is built again without it.
            let wrong = carried.remove(at: index)
            wrong.continuation.resume(throwing: StoreError(
                "ODB: a row for \(table) has \(bindings.count - before) values for \(columns.count) columns"))
            bindings = PostgresBindings(capacity: carried.count * columns.count)
            for job in carried[..<index] { job.row(&bindings) }
        }
        guard !carried.isEmpty else { return }
        do {
            try await odb.execute(statement(rows: carried.count, binds: bindings), logger: odb.logger)
            for job in carried { job.continuation.resume() }
        } catch {
            guard carried.count > 1 else {
                carried[0].continuation.resume(throwing: error)
                return
            }
            // The server refused the statement (nothing of it was committed), or the outcome
            // is unknown: each row again on its own, so that only a bad row fails.
            let state = (error as? PSQLError)?.serverInfo?[.sqlState] ?? ""
            // Data, integrity, syntax or limit errors: the statement was refused, nothing of it
            // committed. Anything else (a lost connection, a server shutting down) leaves the
            // outcome unknown.
            let refused = ["22", "23", "42", "54"].contains(String(state.prefix(2)))
            for job in carried { await insertAlone(job, batchWasRefused: refused) }
        }
    }

    private func insertAlone(_ job: Job, batchWasRefused: Bool) async {
        do {
            var row = PostgresBindings(capacity: columns.count)
            job.row(&row)
            try await odb.execute(statement(rows: 1, binds: row), logger: odb.logger)
            job.continuation.resume()
        } catch let error as PSQLError where !batchWasRefused && error.serverInfo?[.sqlState] == "23505" {
            // A unique violation after a batch whose reply was lost: the batch had committed it.
            job.continuation.resume()
        } catch {
            job.continuation.resume(throwing: error)
        }
    }

    /// `INSERT INTO table(columns) VALUES ($1, …), (…)` for `rows` rows.
    private func statement(rows: Int, binds: PostgresBindings) -> PostgresQuery {
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
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }
}
