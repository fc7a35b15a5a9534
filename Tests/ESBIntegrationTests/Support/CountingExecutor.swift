import ESBConcurrency
import Foundation
import Synchronization

/// A task executor of one service thread that counts the jobs given to it: every hop of a
/// task onto it (after an `await` that left it, or a hop back from an actor) is one.
final class CountingExecutor: TaskExecutor, Sendable {
    private let queue = JobQueue<UnownedJob>()
    private let count = Atomic<Int>(0)

    init() {
        let thread = Thread { [self] in
            ServiceThread.markCurrent()
            let worker = JobQueue<UnownedJob>.Worker()
            while case .job(let job) = queue.take(worker) { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
        thread.name = "counting-executor"
        thread.start()
    }

    /// Jobs enqueued so far.
    var enqueued: Int { count.load(ordering: .relaxed) }

    func enqueue(_ job: consuming ExecutorJob) {
        count.add(1, ordering: .relaxed)
        queue.push(UnownedJob(job))
    }

    /// Lets the thread leave once its queue is empty.
    func shutdown() { queue.close() }
}
