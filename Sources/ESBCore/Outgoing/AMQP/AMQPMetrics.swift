import ESBAMQP
import Logging
import Metrics

/// Counts one outconn's sends and outcomes and logs every connection state change. One per
/// pool, its metric handles made once: the owner threads call it for every message.
final class AMQPMetrics: PoolObserver {
    private let logger: Logger
    private let sent: Counter
    private let outcomes: [SendOutcome: Counter]
    private let reconnects: Counter

    init(outconn: String, logger: Logger) {
        self.logger = logger
        let dimensions = [("outconn", outconn)]
        let labels: [SendOutcome: String] = [
            .confirmed: "esb_amqp_confirmed_total", .written: "esb_amqp_written_total", .returned: "esb_amqp_returned_total",
            .nacked: "esb_amqp_nacked_total", .confirmTimeout: "esb_amqp_confirm_timeouts_total", .failed: "esb_amqp_failed_total",
        ]
        sent = Counter(label: "esb_amqp_sent_total", dimensions: dimensions)
        outcomes = labels.mapValues { Counter(label: $0, dimensions: dimensions) }
        reconnects = Counter(label: "esb_amqp_reconnects_total", dimensions: dimensions)
    }

    func connectionChanged(pool: String, index: Int, status: ConnectionStatus, error: String?) {
        var metadata: Logger.Metadata = ["amqp.outconn": "\(pool)", "amqp.connection": "\(index)", "amqp.status": "\(status.rawValue)"]
        if let error { metadata["amqp.error"] = "\(error)" }
        switch status {
        case .backingOff:
            reconnects.increment()
            logger.warning("outgoing AMQP connection state", metadata: metadata)
        default:
            logger.info("outgoing AMQP connection state", metadata: metadata)
        }
    }

    func published(pool: String) { sent.increment() }

    func settled(pool: String, outcome: SendOutcome) { outcomes[outcome]?.increment() }
}
