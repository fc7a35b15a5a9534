import ESBConcurrency
import Synchronization

/// The consumers of one queue: ``ConsumerConfiguration/consumers`` connections, each with
/// its own channel, `basic.qos` prefetch and owner thread, handing deliveries to one
/// ``ConsumerHandler``. A lost connection or a broker-side cancel is reopened with
/// exponential backoff; what it had unacked the broker redelivers.
public final class ConsumerGroup: Sendable {
    public let configuration: ConsumerConfiguration
    private let workers: [ConsumerWorker]
    /// The stall watchdog; it lives until ``stop(deadline:)`` returns.
    private let timer: Task<Void, Never>
    /// Rung by each owner thread as it exits.
    private let exits = Doorbell()

    /// Creates the consumers and starts connecting in the background.
    public init(_ configuration: ConsumerConfiguration, handler: any ConsumerHandler) {
        self.configuration = configuration
        let exits = exits
        let started = (0..<max(configuration.consumers, 1)).map { index in
            ConsumerWorker(index: index, configuration: configuration, handler: handler, exited: { exits.ring() })
        }
        workers = started
        started.forEach { $0.start() }
        timer = Task.detached {
            while !Task.isCancelled {
                let now = monotonicNanoseconds()
                started.forEach { $0.checkStalled(now: now) }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Each consumer's state.
    public var consumers: [ConsumerSnapshot] { workers.map(\.snapshot) }

    /// Cancels every consumer, lets the deliveries in flight be settled (acked, rejected)
    /// for up to `grace` (nil: until they are), closes the connections and waits for their
    /// threads. Deliveries still unsettled at the end stay unacked: the broker redelivers
    /// them. Cancelling the calling task ends the grace at once.
    public func stop(grace: Duration?) async {
        let deadline = grace.map { monotonicNanoseconds() &+ Self.nanoseconds($0) }
        workers.forEach { $0.stop(deadline: deadline) }
        let workers = workers, exits = exits
        // Waited for in a task of its own: the threads exit soon after a cancellation too.
        let exited = Task {
            while !workers.allSatisfy(\.hasExited) { await exits.wait() }
        }
        await withTaskCancellationHandler {
            await exited.value
        } onCancel: {
            let now = monotonicNanoseconds()
            workers.forEach { $0.stop(deadline: now) }
        }
        timer.cancel()
        await timer.value
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return UInt64(min(seconds, 1 << 32)) * 1_000_000_000 + UInt64(max(0, attoseconds / 1_000_000_000))
    }
}
