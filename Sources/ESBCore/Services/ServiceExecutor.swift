import ESBConcurrency
import Foundation
import Synchronization

/// The threads services run on, apart from Swift's cooperative pool, so that a busy or
/// blocking service cannot starve the connection owners or Swift's own pool.
///
/// The HTTP server's request tasks prefer this executor too (``ExecutorPreferringService``),
/// so that a channel request is parsed, served and answered with no hop between thread pools.
/// For that to be safe with services that block (a synchronous file read, `sleep`), the
/// executor grows: when jobs wait and none has started for ``stallInterval``, every worker is
/// taken and another thread joins, up to ``maximumThreads``. Threads beyond the first
/// `threads` leave after ``idleLifetime`` without work.
///
/// Hand-off: one ``JobQueue`` (a worker already running takes the next job with no wake-up).
public final class ServiceExecutor: TaskExecutor, Sendable {
    /// How long queued jobs may wait with no job starting before a worker is added: long
    /// enough that workers merely preempted on a saturated machine (a few time slices) do not
    /// count as blocked.
    public static let stallInterval: Duration = .milliseconds(100)
    public static let idleLifetime: Duration = .seconds(10)
    public let maximumThreads: Int

    private let queue = JobQueue<UnownedJob>()
    private let threads = Atomic<Int>(0)

    /// Starts `threads` workers that live as long as the process, and the stall watcher.
    public init(threads: Int, maximumThreads: Int = 64) {
        let core = max(1, threads)
        self.maximumThreads = max(core, maximumThreads)
        for _ in 0..<core { spawn(permanent: true) }
        let thread = Thread { [self] in watch() }
        thread.name = "esb-service-watch"
        thread.start()
    }

    /// Worker threads now running (for health pages and tests).
    public var threadCount: Int { threads.load(ordering: .relaxed) }

    public func enqueue(_ job: consuming ExecutorJob) {
        queue.push(UnownedJob(job))
    }

    private func spawn(permanent: Bool) {
        let index = threads.add(1, ordering: .relaxed).oldValue
        let thread = Thread { [self] in work(permanent: permanent) }
        thread.name = "esb-service-\(index)"
        thread.start()
    }

    private func work(permanent: Bool) {
        ServiceThread.markCurrent()
        let worker = JobQueue<UnownedJob>.Worker()
        let executor = asUnownedTaskExecutor()
        while true {
            switch queue.take(worker, idleTimeout: permanent ? nil : Self.idleLifetime) {
            case .job(let job):
                job.runSynchronously(on: executor)
            case .idle, .closed:
                threads.subtract(1, ordering: .relaxed)
                return
            }
        }
    }

    /// Adds a worker when jobs wait and none has started for ``stallInterval``: every worker
    /// is then busy with a service that blocks or runs long. It looks every ``stallInterval``
    /// while any worker is busy and every second while all are idle; nothing on the path of a
    /// job ever wakes it (measured: waking it from `enqueue` cost a context switch per Redis
    /// round trip).
    private func watch() {
        let interval = Self.stallInterval.components
        let seconds = Double(interval.seconds) + Double(interval.attoseconds) / 1e18
        var lastTaken = -1
        while true {
            let load = queue.load
            let running = threads.load(ordering: .relaxed)
            let grow = load.waiting > 0 && load.parked == 0 && load.taken == lastTaken && running < maximumThreads
            lastTaken = load.taken
            if grow { spawn(permanent: false) }
            Thread.sleep(forTimeInterval: load.waiting == 0 && load.parked == running ? 1 : seconds)
        }
    }
}
