import Dispatch
import ESBConcurrency
import Foundation
import Synchronization

/// A pool of up to `poolSize` Redis connections, each used by one thread at a time.
///
/// A call from a service thread (``ServiceThread/isCurrent``) borrows an idle connection and
/// makes the blocking hiredis call itself: no thread hand-off. A call from anywhere else
/// (Swift's cooperative pool, an event loop), or one that finds every connection busy, is
/// handed to the pool's own threads (`kvdb:N`), which wait their turn for a connection.
///
/// A lost connection is dropped and a new one opened on the next call; while Redis is down,
/// calls fail at once with `unavailable` (one connect attempt per retry interval). An idle
/// connection is checked before it is lent after a second unused (a socket readable when
/// nothing was asked means Redis closed it), and sent PING after
/// ``RedisConfiguration/idlePingMilliseconds`` unused.
public final class RedisClient: Sendable {
    /// How long a connection may sit idle before it is checked when lent (one `poll(2)`).
    static let checkAfterNanoseconds: UInt64 = 1_000_000_000

    /// A call handed to the pool's threads: runs with the thread's number (its place in the
    /// queue of borrowers waiting for a connection).
    private struct Job: Sendable {
        let run: @Sendable (Int) -> Void
    }

    /// Where a waiting pool thread is handed its connection.
    private final class Waiter: Sendable {
        let semaphore = DispatchSemaphore(value: 0)
        let grant = Mutex<RedisPoolState<RedisConnection>.Grant?>(nil)
    }

    public let configuration: RedisConfiguration
    private let state: Mutex<RedisPoolState<RedisConnection>>
    private let queue = JobQueue<Job>()
    private let waiters: [Waiter]
    private let shuttingDown = Atomic<Bool>(false)
    private let threadsLeft: Atomic<Int>
    /// Whether the most recent call or connect succeeded.
    private let lastSucceeded = Atomic<Bool>(true)
    /// Calls handed to the pool's threads so far (for tests and health).
    private let handOffCount = Atomic<Int>(0)

    /// Starts the pool's threads; connections are opened by the first calls that need them.
    public init(_ configuration: RedisConfiguration) {
        self.configuration = configuration
        let size = max(1, configuration.poolSize)
        state = Mutex(RedisPoolState(size: size, retryInterval: UInt64(configuration.retryIntervalMilliseconds) * 1_000_000))
        waiters = (0..<size).map { _ in Waiter() }
        threadsLeft = Atomic(size)
        for index in 0..<size {
            let thread = Thread { [self] in run(index) }
            thread.name = "kvdb:\(index)"
            thread.start()
        }
    }

    /// Runs the commands in one round trip; replies in order, error replies in place.
    /// - Throws: ``RedisError`` `unavailable`, `timeout`, `closed`; `reply_error` for an empty command.
    public nonisolated(nonsending) func pipeline(_ commands: [[String]]) async throws -> [RedisReply] {
        try await pipeline(commands, as: RedisReply.self).values
    }

    /// Runs one command; an error reply throws `reply_error`.
    public nonisolated(nonsending) func execute(_ command: [String]) async throws -> RedisReply {
        try await execute(command, as: RedisReply.self)
    }

    /// Runs the commands in one round trip, replies decoded straight into `Value`.
    /// - Throws: ``RedisError`` `unavailable`, `timeout`, `closed`; `reply_error` for an empty command.
    public nonisolated(nonsending) func pipeline<Value: RedisReplyDecodable>(_ commands: [[String]], as type: Value.Type) async throws -> RedisReplies<Value> {
        guard !commands.isEmpty else { return RedisReplies(values: [], firstError: nil) }
        try Self.check(commands)
        return try await run { connection throws(RedisError) in try connection.pipeline(commands, as: type) }
    }

    /// Runs one command, its reply decoded into `Value`; an error reply throws `reply_error`.
    public nonisolated(nonsending) func execute<Value: RedisReplyDecodable>(_ command: [String], as type: Value.Type) async throws -> Value {
        try Self.check(CollectionOfOne(command))
        let (value, error) = try await run { connection throws(RedisError) in try connection.command(command, as: type) }
        if let error { throw RedisError(.reply, error) }
        return value
    }

    /// An empty command would reach hiredis with no arguments.
    private static func check(_ commands: some Collection<[String]>) throws(RedisError) {
        if commands.contains(where: \.isEmpty) { throw RedisError(.reply, "an empty command") }
    }

    /// Runs `operation` on a connection: in place on a service thread that finds one idle,
    /// otherwise handed to the pool's threads.
    private nonisolated(nonsending) func run<Result: Sendable>(
        _ operation: @escaping @Sendable (RedisConnection) throws(RedisError) -> Result
    ) async throws -> Result {
        if ServiceThread.isCurrent, let result = call(operation, waiter: nil) {
            return try result.get()
        }
        handOffCount.add(1, ordering: .relaxed)
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Result, any Error>) in
            let job = Job { [self] waiter in
                // A pool thread waits for a connection rather than answering nil.
                let result = call(operation, waiter: waiter) ?? .failure(closedError)
                continuation.resume(with: result.mapError { $0 as any Error })
            }
            if !queue.push(job) { continuation.resume(throwing: closedError) }
        }
    }

    private var closedError: RedisError { RedisError(.closed, "kvdb \(configuration.address): the client is shut down") }

    /// For health pages: open connections, whether the most recent call succeeded, and the
    /// last failure.
    public var status: (connected: Int, size: Int, healthy: Bool, lastError: String?) {
        let healthy = lastSucceeded.load(ordering: .relaxed)
        return state.withLock { ($0.open, $0.size, healthy, $0.lastFailure?.message) }
    }

    /// Calls handed to the pool's threads so far (a call from a service thread that found an
    /// idle connection is not one).
    public var handOffs: Int { handOffCount.load(ordering: .relaxed) }

    /// Refuses new calls; the pool's threads finish the calls already handed to them, then
    /// the connections are closed (a lent one when it comes back).
    public func shutdown() {
        shuttingDown.store(true, ordering: .relaxed)
        queue.close()
    }

    // MARK: - Lending

    private static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Runs `operation` on a borrowed connection. `waiter`: the pool thread's number, which
    /// waits for a connection when all are busy; nil (a service thread) answers nil instead.
    private func call<Result>(_ operation: (RedisConnection) throws(RedisError) -> Result, waiter: Int?) -> Swift.Result<Result, RedisError>? {
        if waiter == nil, shuttingDown.load(ordering: .relaxed) { return .failure(closedError) }
        while true {
            let grant: RedisPoolState<RedisConnection>.Grant
            switch state.withLock({ $0.borrow(now: Self.now, waiter: waiter) }) {
            case .granted(let granted):
                grant = granted
            case .busy:
                guard let waiter else { return nil }
                waiters[waiter].semaphore.wait()
                guard let handed = waiters[waiter].grant.withLock({ taken in defer { taken = nil }; return taken }) else {
                    preconditionFailure("kvdb: a waiter was woken without a grant")
                }
                grant = handed
            }
            let connection: RedisConnection
            switch grant {
            case .closed:
                return .failure(closedError)
            case .failed(let error):
                lastSucceeded.store(false, ordering: .relaxed)
                return .failure(error)
            case .open:
                do {
                    connection = try RedisConnection(configuration)
                    state.withLock { $0.opened() }
                } catch {
                    lastSucceeded.store(false, ordering: .relaxed)
                    fail(state.withLock { $0.openFailed(error, now: Self.now) }, with: error)
                    return .failure(error)
                }
            case .connection(let idle, let idleSince):
                if Self.now &- idleSince > Self.checkAfterNanoseconds, !idle.looksAlive {
                    giveBack(nil)  // Redis closed it while idle: open another, nothing was sent.
                    continue
                }
                connection = idle
            }
            do {
                let result = try operation(connection)
                lastSucceeded.store(true, ordering: .relaxed)
                giveBack(connection)
                return .success(result)
            } catch {
                // Never retried: the command may have run before the connection failed.
                lastSucceeded.store(false, ordering: .relaxed)
                state.withLock { $0.failed(error) }
                giveBack(nil)
                return .failure(error)
            }
        }
    }

    /// Gives a lent connection back (nil: it was dropped) and does what the pool says.
    private func giveBack(_ connection: RedisConnection?) {
        switch state.withLock({ $0.giveBack(connection, now: Self.now) }) {
        case .pooled, .free:
            break  // A freed connection closes as its last reference goes.
        case .handOver(let grant, let waiter):
            hand(grant, to: waiter)
        }
    }

    private func hand(_ grant: RedisPoolState<RedisConnection>.Grant, to waiter: Int) {
        waiters[waiter].grant.withLock { $0 = grant }
        waiters[waiter].semaphore.signal()
    }

    private func fail(_ waiting: [Int], with error: RedisError) {
        for waiter in waiting { hand(.failed(error), to: waiter) }
    }

    // MARK: - The pool's threads

    /// Takes handed-off calls; thread 0 also sends PING on connections idle for
    /// `idlePingMilliseconds` while it has nothing else to do. The last thread out closes the pool.
    private func run(_ index: Int) {
        let worker = JobQueue<Job>.Worker()
        loop: while true {
            switch queue.take(worker, idleTimeout: index == 0 ? .milliseconds(max(10, configuration.idlePingMilliseconds)) : nil) {
            case .job(let job): job.run(index)
            case .idle: ping()
            case .closed: break loop
            }
        }
        guard threadsLeft.subtract(1, ordering: .relaxed).newValue == 0 else { return }
        let (_, waiting) = state.withLock { $0.close() }
        for waiter in waiting { hand(.closed, to: waiter) }
    }

    /// PING on every connection idle for `idlePingMilliseconds`: one that fails is dropped,
    /// so the next call opens a fresh one instead of failing on it.
    private func ping() {
        let cutoff = Self.now &- UInt64(max(10, configuration.idlePingMilliseconds)) * 1_000_000
        // One at a time: the others stay lendable meanwhile.
        while let connection = state.withLock({ $0.takeIdle(before: cutoff) }) {
            let alive = connection.looksAlive && (try? connection.command(["PING"], as: RedisReply.self)) != nil
            giveBack(alive ? connection : nil)
        }
    }
}
