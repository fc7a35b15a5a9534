/// The Redis pool's bookkeeping, without I/O or threads: which connections are idle, how
/// many exist, who waits for one, and whether a failed connect holds new attempts back.
/// ``RedisClient`` keeps it under a lock and does what its answers say.
///
/// A connection is used by one thread at a time: a service thread borrows an idle one for a
/// call, or a hand-off thread does for a caller that may not block. Idle connections are
/// lent most recently used first (warm caches, and the cold ones age into a health check).
struct RedisPoolState<Connection: Sendable>: Sendable {
    /// What a borrower gets.
    enum Grant: Sendable {
        /// An idle connection, now the borrower's until it gives it back.
        case connection(Connection, idleSince: UInt64)
        /// Room for one more: the borrower opens a connection, then reports
        /// ``RedisPoolState/opened()`` or ``RedisPoolState/openFailed(_:now:)``.
        case open
        /// A connect failed less than the retry interval ago and no connection is open:
        /// fail at once with that failure.
        case failed(RedisError)
        /// The pool is shut down.
        case closed
    }

    /// What ``borrow(now:waiter:)`` answers.
    enum Borrow {
        case granted(Grant)
        /// Every connection is busy: a borrower that may block waits to be handed one (it was
        /// queued, see ``giveBack(_:now:)``); one that may not hands its call off.
        case busy
    }

    /// What the thread giving a connection back must do with it.
    enum Return {
        /// Nothing more: it is idle in the pool.
        case pooled
        /// Hand `grant` to the waiter `waiter` (and wake it).
        case handOver(Grant, to: Int)
        /// Free it: the pool is closed.
        case free(Connection)
    }

    let size: Int
    let retryInterval: UInt64
    /// Idle connections with when each was given back; the most recent last.
    private(set) var idle: [(connection: Connection, since: UInt64)] = []
    /// Connections that exist or are being opened (idle, lent, opening).
    private(set) var open = 0
    /// Waiting borrowers, first come first served.
    private(set) var waiters: [Int] = []
    private(set) var retryAt: UInt64 = 0
    private(set) var lastFailure: RedisError?
    private(set) var closed = false

    init(size: Int, retryInterval: UInt64) {
        self.size = max(1, size)
        self.retryInterval = retryInterval
    }

    /// A connection for one call. `waiter`: the borrower's number if it can wait for one (it
    /// is queued when every connection is busy); nil if it hands its call off instead.
    mutating func borrow(now: UInt64, waiter: Int?) -> Borrow {
        if closed { return .granted(.closed) }
        if waiters.isEmpty, let last = idle.popLast() { return .granted(.connection(last.connection, idleSince: last.since)) }
        if open < size {
            if open == 0, now < retryAt, let lastFailure { return .granted(.failed(lastFailure)) }
            if now >= retryAt || open == 0 {
                open += 1
                return .granted(.open)
            }
        }
        if let waiter { waiters.append(waiter) }
        return .busy
    }

    /// A connection that was opened for a `.open` grant.
    mutating func opened() {
        retryAt = 0
    }

    /// A connect for a `.open` grant failed: new attempts wait `retryInterval`, and when no
    /// connection is left the waiters fail with `error` (nobody would hand them one).
    mutating func openFailed(_ error: RedisError, now: UInt64) -> [Int] {
        open -= 1
        lastFailure = error
        retryAt = now &+ retryInterval
        return failWaitersIfNoneOpen()
    }

    /// Records a failure of a lent connection (for health), which the borrower dropped.
    mutating func failed(_ error: RedisError) {
        lastFailure = error
    }

    /// The connection lent for a call, back: `nil` when the borrower dropped it (it failed,
    /// or looked dead before use).
    mutating func giveBack(_ connection: Connection?, now: UInt64) -> Return {
        guard let connection else {
            open -= 1
            guard !waiters.isEmpty else { return .pooled }
            let waiter = waiters.removeFirst()
            if closed { return .handOver(.closed, to: waiter) }
            if open == 0, now < retryAt, let lastFailure { return .handOver(.failed(lastFailure), to: waiter) }
            open += 1
            return .handOver(.open, to: waiter)
        }
        if closed {
            open -= 1
            return .free(connection)
        }
        if !waiters.isEmpty { return .handOver(.connection(connection, idleSince: now), to: waiters.removeFirst()) }
        idle.append((connection, now))
        return .pooled
    }

    /// The least recently used idle connection if unused since before `cutoff`, taken out
    /// for a health check; it comes back through ``giveBack(_:now:)``.
    mutating func takeIdle(before cutoff: UInt64) -> Connection? {
        guard waiters.isEmpty, let oldest = idle.first, oldest.since < cutoff else { return nil }
        idle.removeFirst()
        return oldest.connection
    }

    /// Shuts the pool: the idle connections are freed by the caller, lent ones as they come
    /// back; waiters get `.closed`.
    mutating func close() -> (free: [Connection], waiters: [Int]) {
        closed = true
        let free = idle.map(\.connection)
        open -= idle.count
        idle.removeAll()
        defer { waiters.removeAll() }
        return (free, waiters)
    }

    private mutating func failWaitersIfNoneOpen() -> [Int] {
        guard open == 0 else { return [] }
        defer { waiters.removeAll() }
        return waiters
    }
}
