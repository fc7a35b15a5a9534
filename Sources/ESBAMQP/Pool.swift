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
    private let watchdog = Mutex<Task<Void, Never>?>(nil)

    /// Creates the pool and starts connecting in the background; `send` works once a
    /// connection is up.
    public init(_ configuration: PoolConfiguration, observer: (any PoolObserver)? = nil) {
        self.configuration = configuration
        let wakeups = (0..<max(configuration.size, 1)).map { _ in Wakeup() }
        let name = configuration.name, acquire = configuration.acquireTimeoutMilliseconds
        let workersBox = Mutex<[ConnectionWorker]>([])
        let room = WaitingRoom(wakeups: wakeups) { send in
            let reasons = Set(workersBox.withLock { $0 }.compactMap { $0.snapshot.lastError })
            let why = reasons.isEmpty ? "all \(wakeups.count) connections busy" : reasons.sorted().joined(separator: "; ")
            if send.complete(.failure(AMQPError(.poolTimeout, "outgoing connection '\(name)': no connection available within \(acquire) ms (\(why))"))) {
                observer?.settled(pool: name, outcome: .failed)
            }
        }
        let started = wakeups.enumerated().map { index, wakeup in
            ConnectionWorker(index: index, configuration: configuration, wakeup: wakeup, room: room, observer: observer)
        }
        self.room = room
        workers = started
        workersBox.withLock { $0 = started }
        started.forEach { $0.start() }
        watchdog.withLock {
            $0 = Task.detached {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(200))
                    let now = monotonicNanoseconds()
                    started.forEach { $0.checkStalled(now: now) }
                }
            }
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

    /// Stops taking sends, lets in-flight ones finish (bounded by the confirm timeout),
    /// closes the connections and waits for their threads. Returns the sends that were still
    /// waiting for a connection, unsettled, for a successor pool to take.
    public func shutdown() async -> [PendingSendHandle] {
        closing.store(true, ordering: .releasing)
        workers.forEach { $0.stop() }
        let limit = ContinuousClock.now + .milliseconds(configuration.confirmTimeoutMilliseconds + configuration.broker.connectTimeoutMilliseconds * 2)
        while !workers.allSatisfy(\.hasExited) && ContinuousClock.now < limit {
            try? await Task.sleep(for: .milliseconds(10))
        }
        watchdog.withLock { $0?.cancel() }
        return room.takeAll().map(PendingSendHandle.init)
    }

    /// Takes over sends another pool could not place (a rebuilt pool's predecessor's).
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
