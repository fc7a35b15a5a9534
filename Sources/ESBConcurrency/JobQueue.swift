import Dispatch
import Synchronization

/// A first-in first-out queue of jobs for threads of our own: the one hand-off between
/// async callers and the threads that run blocking work (the service executor's workers,
/// the Redis connections' owners).
///
/// A push appends under a short lock. A thread with nothing to do parks on its own
/// semaphore and is woken by name, most recently parked first (its caches are warm),
/// outside the lock; a thread that is already running takes the next job with no wake-up.
///
/// Its methods are inlinable: callers in other modules get code specialized to their job
/// type, not generic calls on the hot path of every service call and Redis command.
///
/// The AMQP connection owners do not use it: each waits in `poll(2)` on its socket and an
/// eventfd at once (confirms, returns and heartbeats arrive on the socket unasked), which a
/// semaphore cannot do.
public final class JobQueue<Job: Sendable>: Sendable {
    /// A thread's place in the queue: created once per thread, passed to every ``take(_:idleTimeout:)``.
    public final class Worker: Sendable {
        @usableFromInline let semaphore = DispatchSemaphore(value: 0)
        /// A place for the calling thread.
        public init() {}
    }

    /// What a thread gets from ``take(_:idleTimeout:)``.
    public enum Taken {
        case job(Job)
        /// Nothing came within the idle timeout; the thread may leave.
        case idle
        /// The queue is closed and empty; the thread must leave.
        case closed
    }

    @usableFromInline struct State {
        @usableFromInline var jobs: [Job] = []
        @usableFromInline var head = 0
        @usableFromInline var parked: [Worker] = []
        @usableFromInline var taken = 0
        @usableFromInline var closed = false
        @usableFromInline init() {}
    }

    @usableFromInline let state = Mutex(State())

    /// An empty, open queue.
    public init() {}

    /// Adds a job and wakes a parked thread, if any.
    /// - Returns: false when the queue is closed (the job was not taken).
    @discardableResult @inlinable
    public func push(_ job: Job) -> Bool {
        let (accepted, worker) = state.withLock { state -> (Bool, Worker?) in
            guard !state.closed else { return (false, nil) }
            state.jobs.append(job)
            return (true, state.parked.popLast())
        }
        worker?.semaphore.signal()
        return accepted
    }

    /// The next job, waiting for one; with `idleTimeout`, ``Taken/idle`` once that long
    /// passed without one. Blocks the calling thread: never call it from async code.
    @inlinable
    public func take(_ worker: Worker, idleTimeout: Duration? = nil) -> Taken {
        while true {
            let next = state.withLock { state -> Taken? in
                if state.head < state.jobs.count {
                    let job = state.jobs[state.head]
                    state.head += 1
                    state.taken &+= 1
                    if state.head > 1024 && state.head * 2 > state.jobs.count {
                        state.jobs.removeFirst(state.head)
                        state.head = 0
                    }
                    return .job(job)
                }
                if state.closed { return .closed }
                state.parked.append(worker)
                return nil
            }
            if let next { return next }
            guard let idleTimeout else {
                worker.semaphore.wait()
                continue
            }
            let parts = idleTimeout.components
            let deadline = DispatchTime.now() + .nanoseconds(Int(parts.seconds) * 1_000_000_000 + Int(parts.attoseconds / 1_000_000_000))
            guard worker.semaphore.wait(timeout: deadline) == .timedOut else { continue }
            // Leave, unless a push picked this thread meanwhile (then its signal is owed).
            let left = state.withLock { state -> Bool in
                guard let index = state.parked.firstIndex(where: { $0 === worker }) else { return false }
                state.parked.remove(at: index)
                return true
            }
            if left { return .idle }
            worker.semaphore.wait()
        }
    }

    /// Refuses further jobs and wakes every parked thread; the jobs already queued are
    /// still taken, then ``take(_:idleTimeout:)`` answers ``Taken/closed``.
    @inlinable
    public func close() {
        let parked = state.withLock { state -> [Worker] in
            state.closed = true
            defer { state.parked.removeAll() }
            return state.parked
        }
        parked.forEach { $0.semaphore.signal() }
    }

    /// Jobs waiting, threads parked, and jobs taken so far (a counter that wraps), for a
    /// watcher that decides whether threads are stuck.
    @inlinable
    public var load: (waiting: Int, parked: Int, taken: Int) {
        state.withLock { ($0.jobs.count - $0.head, $0.parked.count, $0.taken) }
    }
}
