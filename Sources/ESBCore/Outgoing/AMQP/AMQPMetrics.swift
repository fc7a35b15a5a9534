import ESBAMQP
import Logging
import Metrics
import Synchronization

/// Counts each outconn's sends and outcomes and logs every connection state change.
final class AMQPMetrics: PoolObserver {
    private struct Handles: Sendable {
        var sent: Counter
        var outcomes: [SendOutcome: Counter]
        var reconnects: Counter
    }

    private let logger: Logger
    private let handles = Mutex<[String: Handles]>([:])

    init(logger: Logger) { self.logger = logger }

    /// Handles per outconn, made once.
    private func handles(_ pool: String) -> Handles {
        handles.withLock { cache in
            if let known = cache[pool] { return known }
            let dimensions = [("outconn", pool)]
            let outcomes: [SendOutcome: String] = [
                .confirmed: "esb_amqp_confirmed_total", .written: "esb_amqp_written_total", .returned: "esb_amqp_returned_total",
                .nacked: "esb_amqp_nacked_total", .confirmTimeout: "esb_amqp_confirm_timeouts_total", .failed: "esb_amqp_failed_total",
            ]
            let made = Handles(
                sent: Counter(label: "esb_amqp_sent_total", dimensions: dimensions),
                outcomes: outcomes.mapValues { Counter(label: $0, dimensions: dimensions) },
                reconnects: Counter(label: "esb_amqp_reconnects_total", dimensions: dimensions))
            cache[pool] = made
            return made
        }
    }

    func connectionChanged(pool: String, index: Int, status: ConnectionStatus, error: String?) {
        var metadata: Logger.Metadata = ["amqp.outconn": "\(pool)", "amqp.connection": "\(index)", "amqp.status": "\(status.rawValue)"]
        if let error { metadata["amqp.error"] = "\(error)" }
        switch status {
        case .backingOff:
            handles(pool).reconnects.increment()
            logger.warning("outgoing AMQP connection state", metadata: metadata)
        default:
            logger.info("outgoing AMQP connection state", metadata: metadata)
        }
    }

    func published(pool: String) { handles(pool).sent.increment() }

    func settled(pool: String, outcome: SendOutcome) { handles(pool).outcomes[outcome]?.increment() }
}
