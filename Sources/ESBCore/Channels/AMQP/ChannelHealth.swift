import ESBAMQP

/// An AMQP channel's consumers as health and the dashboard report them.
public struct ChannelHealth: Sendable, Codable, Equatable {
    public var queue: String
    public var service: String
    /// Consumers receiving deliveries.
    public var consuming: Int
    /// Each consumer.
    public var consumers: [Consumer]

    /// One consumer: its own connection and channel.
    public struct Consumer: Sendable, Codable, Equatable {
        /// From 0.
        public var index: Int
        /// `connecting`, `consuming`, `waiting` (backing off: see `last_error`), `draining`, `stopped`.
        public var status: String
        /// Deliveries handed to the service and not yet acked or rejected.
        public var inFlight: Int
        /// Deliveries received.
        public var consumed: Int
        /// Deliveries acked after their service returned.
        public var handled: Int
        /// Service calls that threw.
        public var failed: Int
        /// Deliveries rejected without requeue (to the queue's dead-letter exchange).
        public var rejected: Int
        /// Deliveries put back (the service went away).
        public var requeued: Int
        /// Why it last failed or does not consume, if it has.
        public var lastError: String?
        public var reconnects: Int

        enum CodingKeys: String, CodingKey {
            case index, status, inFlight = "in_flight", consumed, handled, failed, rejected, requeued,
                 lastError = "last_error", reconnects
        }
    }

    init(settings: AMQPChannelSettings, snapshots: [ConsumerSnapshot], counts: [AMQPChannelConsumer.ConsumerCounts]) {
        queue = settings.consumers.queue
        service = settings.service
        consuming = snapshots.filter { $0.status == .consuming }.count
        consumers = snapshots.map { snapshot in
            let count = counts.indices.contains(snapshot.index) ? counts[snapshot.index] : .init()
            return Consumer(index: snapshot.index, status: snapshot.status.rawValue, inFlight: snapshot.inFlight,
                            consumed: snapshot.delivered, handled: count.handled, failed: count.failed,
                            rejected: count.rejected, requeued: count.requeued, lastError: snapshot.lastError,
                            reconnects: snapshot.reconnects)
        }
    }
}
