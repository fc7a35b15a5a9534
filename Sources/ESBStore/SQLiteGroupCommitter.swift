import Foundation
import GRDB
import Synchronization

/// Writes to the ODB in group commits: operations that arrive while a transaction is being
/// written wait, then all of them go into the next transaction, each in its own savepoint.
///
/// One commit per batch instead of one per operation is what lets durable async
/// acceptance keep up with thousands of callers. An operation that throws rolls back its
/// savepoint only and fails alone; a failed commit fails the whole batch. Everything runs
/// on GRDB's writer queue, never on Swift's cooperative pool.
public final class SQLiteGroupCommitter: Sendable {
    private let pool: DatabasePool
    private let queue = Mutex<Queue>(Queue())

    private struct Queue {
        var jobs: [Job] = []
        var writing = false
    }

    private struct Job: Sendable {
        /// Runs inside the job's savepoint.
        var run: @Sendable (Database) throws -> Void
        /// Called once the batch's transaction ended: `nil` when it committed.
        var finish: @Sendable ((any Error)?) -> Void
    }

    public init(pool: DatabasePool) { self.pool = pool }

    /// Runs `operation` in the next group commit and returns its result once committed.
    /// - Throws: what `operation` threw, or the commit's error.
    public func write<T: Sendable>(_ operation: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let outcome = OutcomeBox<T>()
            enqueue(Job(
                run: { db in
                    do {
                        outcome.set(.success(try operation(db)))
                    } catch {
                        outcome.set(.failure(error))
                        throw error
                    }
                },
                finish: { commitError in
                    if let commitError, case .success = outcome.get() {
                        continuation.resume(throwing: commitError)
                    } else {
                        continuation.resume(with: outcome.get() ?? .failure(commitError ?? StoreError("group commit lost an operation")))
                    }
                }))
        }
    }

    private func enqueue(_ job: Job) {
        let startWriting = queue.withLock { queue -> Bool in
            queue.jobs.append(job)
            if queue.writing { return false }
            queue.writing = true
            return true
        }
        if startWriting { writeNextBatch() }
    }

    /// Takes every waiting job into one transaction; repeats until none waits.
    private func writeNextBatch() {
        let batch = queue.withLock { queue -> [Job] in
            let batch = queue.jobs
            queue.jobs.removeAll(keepingCapacity: true)
            if batch.isEmpty { queue.writing = false }
            return batch
        }
        guard !batch.isEmpty else { return }
        pool.asyncWriteWithoutTransaction { db in
            var commitError: (any Error)?
            do {
                try db.inTransaction(.immediate) {
                    for job in batch {
                        // A failing job has already recorded its error; the others go on.
                        try? db.inSavepoint {
                            try job.run(db)
                            return .commit
                        }
                    }
                    return .commit
                }
            } catch {
                commitError = error
            }
            for job in batch { job.finish(commitError) }
            self.writeNextBatch()
        }
    }
}

/// One job's result, set inside the transaction and read after it, both on the writer queue.
private final class OutcomeBox<T: Sendable>: Sendable {
    private let value = Mutex<Result<T, any Error>?>(nil)
    func set(_ result: Result<T, any Error>) { value.withLock { $0 = result } }
    func get() -> Result<T, any Error>? { value.withLock { $0 } }
}
