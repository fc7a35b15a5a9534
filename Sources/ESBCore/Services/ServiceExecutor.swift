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
/// Hand-off: a queue under a short lock; an idle worker parks on its own semaphore and is
/// woken by name (most recently parked first, its caches are warm), outside the lock; a
/// worker that is already running takes the next job without any wake-up.
public final class ServiceExecutor: TaskExecutor, Sendable {
    /// How long queued jobs may wait with no job starting before a worker is added: long
    /// enough that workers merely preempted on a saturated machine (a few time slices) do not
    /// count as blocked.
    public static let stallInterval: Duration = .milliseconds(100)
    public static let idleLifetime: Duration = .seconds(10)
    public let maximumThreads: Int

    private final class Parking: Sendable {
        let semaphore = DispatchSemaphore(value: 0)
    }

    private struct State {
        var jobs: [UnownedJob] = []
        var head = 0
        var threads = 0
        /// Parked workers, most recently parked last.
        var parked: [Parking] = []
        /// Jobs taken so far: the watcher compares it between two looks.
        var started = 0
    }

    private let state = Mutex(State())

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
    public var threadCount: Int { state.withLock { $0.threads } }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let worker = state.withLock { state -> Parking? in
            state.jobs.append(job)
            return state.parked.popLast()
        }
        worker?.semaphore.signal()
    }

    private func spawn(permanent: Bool) {
        let index = state.withLock { state -> Int in
            state.threads += 1
            return state.threads - 1
        }
        let thread = Thread { [self] in work(permanent: permanent) }
        thread.name = "esb-service-\(index)"
        thread.start()
    }

    private enum Next {
        case run(UnownedJob)
        case park(Parking)
    }

    private func work(permanent: Bool) {
        let parking = Parking()
        let executor = asUnownedTaskExecutor()
        while true {
            let next = state.withLock { state -> Next in
                guard state.head < state.jobs.count else {
                    state.parked.append(parking)
                    return .park(parking)
                }
                let job = state.jobs[state.head]
                state.head += 1
                state.started &+= 1
                if state.head > 1024 && state.head * 2 > state.jobs.count {
                    state.jobs.removeFirst(state.head)
                    state.head = 0
                }
                return .run(job)
            }
            switch next {
            case .run(let job):
                job.runSynchronously(on: executor)
            case .park(let parking):
                if permanent {
                    parking.semaphore.wait()
                    continue
                }
                let lifetime = Self.idleLifetime.components
                let deadline = DispatchTime.now() + .seconds(Int(lifetime.seconds))
                guard parking.semaphore.wait(timeout: deadline) == .timedOut else { continue }
                // Leave, unless an enqueue picked this worker meanwhile (then its signal is owed).
                let left = state.withLock { state -> Bool in
                    guard let index = state.parked.firstIndex(where: { $0 === parking }) else { return false }
                    state.parked.remove(at: index)
                    state.threads -= 1
                    return true
                }
                if left { return }
                parking.semaphore.wait()
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
        var lastStarted = -1
        while true {
            let (grow, idle) = state.withLock { state -> (Bool, Bool) in
                let waiting = state.head < state.jobs.count && state.parked.isEmpty
                let grow = waiting && state.started == lastStarted && state.threads < maximumThreads
                lastStarted = state.started
                return (grow, state.head == state.jobs.count && state.parked.count == state.threads)
            }
            if grow { spawn(permanent: false) }
            Thread.sleep(forTimeInterval: idle ? 1 : seconds)
        }
    }
}
