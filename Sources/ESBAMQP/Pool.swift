import ESBConcurrency
import Glibc
import Synchronization

/// `size` confirmed publishing connections to one broker, each with its own owner thread.
///
/// Many sends ride one channel at once, each awaiting its own confirm (a window of
/// ``PoolConfiguration/window`` per connection). A send that finds no connected connection
/// with room waits up to the acquire timeout. A lost connection fails what it had written
/// and hands what it had not to the others; it is reopened with exponential backoff.
public final class Pool: Sendable {
    public let configuration: PoolConfiguration
    private let workers: [ConnectionWorker]
    private let room: WaitingRoom
    private let next = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)
    /// The pool's one timer: the stall watchdog and the waiting sends' acquire deadlines.
    /// It lives from `init` to the end of ``shutdown()``, which waits for it.
    private let timer: Task<Void, Never>
    /// Rung by each owner thread as it exits.
    private let exits = Doorbell()

    /// Creates the pool and starts connecting in the background; `send` works once a
    /// connection is up.
    public init(_ configuration: PoolConfiguration, observer: (any PoolObserver)? = nil) {
        self.configuration = configuration
        let wakeups = (0..<max(configuration.size, 1)).map { _ in Wakeup() }
        let name = configuration.name, acquire = configuration.acquireTimeoutMilliseconds
        let workersBox = Mutex<[ConnectionWorker]>([])
        let room = WaitingRoom(wakeups: wakeups, expired: { send in
            let reasons = Set(workersBox.withLock { $0 }.compactMap { $0.snapshot.lastError })
            let why = reasons.isEmpty ? "all \(wakeups.count) connections busy" : reasons.sorted().joined(separator: "; ")
            if send.complete(.failure(AMQPError(.poolTimeout, "outgoing connection '\(name)': no connection available within \(acquire) ms (\(why))"))) {
                observer?.settled(pool: name, outcome: .failed)
            }
        }, refused: { send in
            send.complete(.failure(AMQPError(.closed, "outgoing connection '\(name)': the pool is closing")))
        })
        let exits = exits
        let started = wakeups.enumerated().map { index, wakeup in
            ConnectionWorker(index: index, configuration: configuration, wakeup: wakeup, room: room, observer: observer,
                             exited: { exits.ring() })
        }
        self.room = room
        workers = started
        workersBox.withLock { $0 = started }
        started.forEach { $0.start() }
        timer = Task.detached { await Self.watch(started, room: room) }
    }

    /// Every 200 ms, shuts the socket of an owner stuck in a blocking call (a stalled
    /// broker); in between, fails waiting sends at their acquire deadlines. Ends when cancelled.
    private static func watch(_ workers: [ConnectionWorker], room: WaitingRoom) async {
        let period: UInt64 = 200_000_000
        var nextCheck = monotonicNanoseconds() + period
        while !Task.isCancelled {
            var now = monotonicNanoseconds()
            if now >= nextCheck {
                workers.forEach { $0.checkStalled(now: now) }
                nextCheck = now + period
            }
            // A send parked after this look with an earlier deadline than `until` rings (the
            // ring is kept if it comes before the wait).
            let until = room.expire(now: now, nextLook: nextCheck)
            now = monotonicNanoseconds()
            if until > now { await room.admitted.wait(upTo: .nanoseconds(Int64(clamping: until - now))) }
        }
    }

    /// Publishes `message`; with confirms on, returns once the broker acked it.
    /// - Throws: ``AMQPError`` `returned`, `nacked`, `confirmTimeout`, `connectionFailed`,
    ///   `channelClosed`, `poolTimeout`, `closed`.
    public func send(_ message: OutgoingMessage) async throws {
        if closing.load(ordering: .acquiring) {
            throw AMQPError(.closed, "outgoing connection '\(configuration.name)': the pool is closing")
        }
        let deadline = monotonicNanoseconds() + UInt64(configuration.acquireTimeoutMilliseconds) * 1_000_000
        // Unsafe (unchecked) continuation: PendingSend completes exactly once by construction.
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            dispatch(PendingSend(message: message, acquireDeadline: deadline) { result in
                continuation.resume(with: result.mapError { $0 as any Error })
            })
        }
    }

    /// Hands a send to the next connection with room, or parks it until one has.
    private func dispatch(_ send: PendingSend) {
        let count = workers.count
        let start = next.add(1, ordering: .relaxed).oldValue
        for offset in 0..<count where workers[(start &+ offset) % count].submit(send) { return }
        room.admit(CollectionOfOne(send))
    }

    /// Each connection's state.
    public var connections: [ConnectionSnapshot] { workers.map(\.snapshot) }

    /// `send(2)` calls that wrote publishes, over every connection (plain TCP; a TLS
    /// connection publishes through librabbitmq and counts none): the publishes waiting when
    /// a connection's owner wakes go out in one.
    public var socketWrites: Int { workers.reduce(0) { $0 + $1.socketWrites } }

    /// Sends a service thread wrote to the socket itself, finding the connection's owner
    /// asleep (plain TCP): no hand-off to the owner for them.
    public var sendsWrittenDirectly: Int { workers.reduce(0) { $0 + $1.sendsWrittenDirectly } }

    /// Stops taking sends, lets in-flight ones finish (bounded by the confirm timeout),
    /// closes the connections and waits for their threads. Returns the sends that were still
    /// waiting for a connection, unsettled, for a successor pool to take.
    public func shutdown() async -> [PendingSendHandle] {
        closing.store(true, ordering: .releasing)
        workers.forEach { $0.stop() }
        let limit = Duration.milliseconds(configuration.confirmTimeoutMilliseconds + configuration.broker.connectTimeoutMilliseconds * 2)
        let workers = workers, exits = exits
        _ = try? await withDeadline(limit) {
            while !Task.isCancelled && !workers.allSatisfy(\.hasExited) { await exits.wait() }
        }
        timer.cancel()
        await timer.value
        return room.close().map(PendingSendHandle.init)
    }

    /// Takes over sends another pool could not place (a rebuilt pool's predecessor's); a
    /// pool already shut down fails them with `closed`, and their callers try its successor.
    public func adopt(_ sends: [PendingSendHandle]) {
        sends.forEach { dispatch($0.send) }
    }
}

/// A send handed from a pool being replaced to its successor.
public struct PendingSendHandle: Sendable {
    let send: PendingSend

    /// Fails the send (no successor).
    public func fail(_ error: AMQPError) { send.complete(.failure(error)) }
}
