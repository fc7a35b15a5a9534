import Foundation

/// The threads services run on, apart from Swift's cooperative pool, so that a busy or
/// blocking service cannot starve the connection owners or Swift's own pool.
///
/// The HTTP server's request tasks prefer this executor too (``HTTPServer``), so that a
/// channel request is parsed, served and answered on one thread with no hop between pools.
/// For that to be safe with services that block (a synchronous file read, `sleep`), the
/// executor grows: when jobs wait and none has started for ``stallInterval``, every worker is
/// taken and another thread joins, up to ``maximumThreads``. Threads beyond the first
/// `threads` leave after ``idleLifetime`` without work.
public final class ServiceExecutor: TaskExecutor, @unchecked Sendable {
    /// How long queued jobs may wait with no job starting before a worker is added: long
    /// enough that workers merely preempted on a saturated machine (a few time slices) do not
    /// count as blocked.
    public static let stallInterval: Duration = .milliseconds(100)
    public static let idleLifetime: TimeInterval = 10
    public let maximumThreads: Int

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var threads = 0
    private var idle = 0
    /// Jobs taken so far: the watcher compares it between two looks.
    private var started = 0
    private var watcherSleeping = false
    private let watcher = NSCondition()
    private let core: Int

    /// Starts `threads` workers that live as long as the process, and the stall watcher.
    public init(threads: Int, maximumThreads: Int = 64) {
        core = max(1, threads)
        self.maximumThreads = max(core, maximumThreads)
        condition.lock()
        for _ in 0..<core { spawn(permanent: true) }
        condition.unlock()
        let thread = Thread { [unowned self] in self.watch() }
        thread.name = "esb-service-watch"
        thread.start()
    }

    /// Worker threads now running (for health pages and tests).
    public var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        if idle > 0 { condition.signal() }
        let wakeWatcher = idle == 0 && watcherSleeping
        condition.unlock()
        if wakeWatcher {
            watcher.lock()
            watcher.signal()
            watcher.unlock()
        }
    }

    /// Called with `condition` held.
    private func spawn(permanent: Bool) {
        threads += 1
        let thread = Thread { [unowned self] in self.work(permanent: permanent) }
        thread.name = "esb-service-\(threads - 1)"
        thread.start()
    }

    private func work(permanent: Bool) {
        condition.lock()
        while true {
            while head == jobs.count {
                idle += 1
                let woken = permanent
                    ? { condition.wait(); return true }()
                    : condition.wait(until: Date(timeIntervalSinceNow: Self.idleLifetime))
                idle -= 1
                if !woken && head == jobs.count {
                    threads -= 1
                    condition.unlock()
                    return
                }
            }
            let job = jobs[head]
            head += 1
            started &+= 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
            condition.lock()
        }
    }

    /// Adds a worker when jobs wait and none has started for ``stallInterval``: every worker
    /// is then busy with a service that blocks or runs long. Sleeps while nothing waits.
    private func watch() {
        let interval = Double(Self.stallInterval.components.attoseconds) / 1e18 + Double(Self.stallInterval.components.seconds)
        var lastStarted = -1
        while true {
            condition.lock()
            let waiting = head < jobs.count && idle == 0
            if waiting && started == lastStarted && threads < maximumThreads {
                spawn(permanent: false)
            }
            lastStarted = started
            watcher.lock()
            watcherSleeping = !waiting
            condition.unlock()
            if watcherSleeping {
                watcher.wait()
            } else {
                _ = watcher.wait(until: Date(timeIntervalSinceNow: interval))
            }
            watcher.unlock()
        }
    }
}
