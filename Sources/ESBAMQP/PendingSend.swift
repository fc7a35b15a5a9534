import Glibc
import Synchronization

/// One `send` on its way: completed exactly once, by whoever settles it first.
final class PendingSend: Sendable {
    let message: OutgoingMessage
    /// Monotonic nanoseconds after which waiting for a connection fails with `pool_timeout`.
    let acquireDeadline: UInt64
    private let completion: @Sendable (Result<Void, AMQPError>) -> Void
    private let done = Atomic<Bool>(false)

    init(message: OutgoingMessage, acquireDeadline: UInt64,
         completion: @escaping @Sendable (Result<Void, AMQPError>) -> Void) {
        self.message = message
        self.acquireDeadline = acquireDeadline
        self.completion = completion
    }

    /// Settles the send; later calls are ignored. Returns whether this call settled it.
    @discardableResult
    func complete(_ result: Result<Void, AMQPError>) -> Bool {
        guard done.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return false }
        completion(result)
        return true
    }

    var isDone: Bool { done.load(ordering: .acquiring) }
}

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC), for deadlines shared across threads.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
