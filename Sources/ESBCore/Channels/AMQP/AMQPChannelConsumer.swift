import ESBAMQP
import ESBService
import Foundation
import Logging
import Metrics
import Synchronization

/// What one AMQP channel does with each delivery: check its `data_format`, call the service
/// (again after `retry_delay_ms` when it throws, up to `max_attempts` calls), then settle:
/// ack once the service returned, reject without requeue once every call failed (logged
/// with the cid, the last error, the headers and the body), requeue when the service is no
/// longer deployed (and the consumer stops until it is).
///
/// The consumers' owner threads call it: ``handle(_:)`` hands each delivery to a task and
/// returns at once; the service runs on the service executor.
final class AMQPChannelConsumer: ConsumerHandler {
    let settings: AMQPChannelSettings
    private let invoker: ServiceInvoker
    private let logger: Logger
    private let counts: Mutex<[ConsumerCounts]>
    private let metrics: ChannelMetrics

    /// One consumer's tallies since its channel (re)started.
    struct ConsumerCounts: Sendable, Equatable {
        /// Deliveries acked after their service returned.
        var handled = 0
        /// Service calls that threw.
        var failed = 0
        /// Deliveries rejected without requeue (bad body, or every call failed).
        var rejected = 0
        /// Deliveries put back in the queue (the service went away).
        var requeued = 0
    }

    init(settings: AMQPChannelSettings, invoker: ServiceInvoker, logger: Logger) {
        self.settings = settings
        self.invoker = invoker
        self.logger = logger
        counts = Mutex(Array(repeating: ConsumerCounts(), count: max(settings.consumers.consumers, 1)))
        metrics = ChannelMetrics(channel: settings.name)
    }

    /// Each consumer's tallies.
    var consumerCounts: [ConsumerCounts] { counts.withLock { $0 } }

    // MARK: ConsumerHandler

    func reasonNotToConsume() -> String? {
        do {
            try invoker.checkInvocable(settings.service)
            return nil
        } catch let error as ServiceError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    func handle(_ delivery: Delivery) {
        metrics.consumed.increment()
        // On the service executor from the start: the data_format check parses whole bodies.
        Task(executorPreference: invoker.executor) { [self] in await process(delivery) }
    }

    func consumerChanged(channel: String, index: Int, status: ConsumerStatus, error: String?) {
        var metadata: Logger.Metadata = ["amqp.channel": "\(channel)", "amqp.consumer": "\(index)", "amqp.status": "\(status.rawValue)"]
        if let error { metadata["amqp.error"] = "\(error)" }
        if status == .waiting {
            metrics.reconnects.increment()
            logger.warning("AMQP channel consumer state", metadata: metadata)
        } else {
            logger.info("AMQP channel consumer state", metadata: metadata)
        }
    }

    func settled(channel: String, index: Int, outcome: DeliveryOutcome) {
        switch outcome {
        case .ack: metrics.acked.increment()
        case .reject: metrics.rejected.increment()
        case .requeue: metrics.requeued.increment()
        }
        counts.withLock { counts in
            guard counts.indices.contains(index) else { return }
            switch outcome {
            case .ack: counts[index].handled += 1
            case .reject: counts[index].rejected += 1
            case .requeue: counts[index].requeued += 1
            }
        }
    }

    // MARK: One delivery

    private func process(_ delivery: Delivery) async {
        let headers = delivery.properties.headers
        let cid = AMQPDeliveries.cid(headers) ?? ServiceInvoker.newCID()
        if let malformed = delivery.malformed {
            giveUp(delivery, cid: cid, attempts: 0, error: "the message cannot be handled: \(malformed)")
            return
        }
        if let problem = PayloadFormat.problem(in: delivery.body, format: settings.dataFormat) {
            giveUp(delivery, cid: cid, attempts: 0, error: "the body is not \(settings.dataFormat) (data_format \(settings.dataFormat)): \(problem)")
            return
        }
        let sdkHeaders = headers.mapValues(AMQPDeliveries.value)
        let properties = AMQPDeliveries.properties(delivery.properties)
        var lastError = ""
        for attempt in 1...max(settings.maxAttempts, 1) {
            if attempt > 1, settings.retryDelayMilliseconds > 0 {
                try? await Task.sleep(for: .milliseconds(settings.retryDelayMilliseconds))
            }
            if let reason = reasonNotToConsume() {
                // Not this message's fault: back to the queue, and the consumer stops until
                // the service is deployed again.
                logger.warning("AMQP channel's service cannot be called; delivery requeued", metadata: [
                    "amqp.channel": "\(settings.name)", "esb.cid": "\(cid)", "esb.error": "\(reason)"])
                delivery.settle(.requeue, recheck: true)
                return
            }
            let request = ServiceRequest(
                payload: delivery.body, channel: "amqp", cid: cid, headers: AMQPDeliveries.stringHeaders(headers),
                amqp: AMQPDelivery(exchange: delivery.exchange, routingKey: delivery.routingKey, redelivered: delivery.redelivered,
                                   deliveryTag: delivery.deliveryTag, attempt: attempt, properties: properties, headers: sdkHeaders))
            do {
                _ = try await invoker.invoke(settings.service, request: request)
                delivery.settle(.ack)
                return
            } catch {
                // Whatever the service threw (an unknown service it invoked too) is its failure.
                metrics.failed.increment()
                counts.withLock { counts in
                    if counts.indices.contains(delivery.consumer) { counts[delivery.consumer].failed += 1 }
                }
                lastError = "\(error)"
            }
        }
        giveUp(delivery, cid: cid, attempts: settings.maxAttempts, error: lastError)
    }

    /// Rejects without requeue (the queue's dead-letter exchange gets it) and logs it all.
    private func giveUp(_ delivery: Delivery, cid: String, attempts: Int, error: String) {
        logger.error("AMQP delivery rejected", metadata: [
            "amqp.channel": "\(settings.name)", "esb.service": "\(settings.service)", "esb.cid": "\(cid)",
            "amqp.attempts": "\(attempts)", "esb.error": "\(error)",
            "amqp.exchange": "\(delivery.exchange)", "amqp.routing_key": "\(delivery.routingKey)",
            "amqp.redelivered": "\(delivery.redelivered)",
            "amqp.headers": "\(delivery.properties.headers.mapValues(AMQPDeliveries.value))",
            "amqp.body": "\(AMQPDeliveries.loggable(delivery.body))",
        ])
        delivery.settle(.reject)
    }
}

/// One channel's counters, made once (the consumers' threads update them per message).
struct ChannelMetrics: Sendable {
    let consumed: Counter
    let acked: Counter
    let failed: Counter
    let rejected: Counter
    let requeued: Counter
    let reconnects: Counter

    init(channel: String) {
        let dimensions = [("channel", channel)]
        consumed = Counter(label: "esb_amqp_channel_consumed_total", dimensions: dimensions)
        acked = Counter(label: "esb_amqp_channel_acked_total", dimensions: dimensions)
        failed = Counter(label: "esb_amqp_channel_failed_total", dimensions: dimensions)
        rejected = Counter(label: "esb_amqp_channel_rejected_total", dimensions: dimensions)
        requeued = Counter(label: "esb_amqp_channel_requeued_total", dimensions: dimensions)
        reconnects = Counter(label: "esb_amqp_channel_reconnects_total", dimensions: dimensions)
    }
}
