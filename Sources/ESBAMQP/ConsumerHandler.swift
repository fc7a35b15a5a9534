import Foundation

/// What a ``ConsumerGroup`` calls: on the consumers' owner threads, so every method returns
/// at once (hand the delivery to a task; count; log).
public protocol ConsumerHandler: Sendable {
    /// Why the consumers may not consume now (the channel's service is not deployed), or
    /// nil. Asked before each connection attempt; a reason backs off like a failed connect.
    func reasonNotToConsume() -> String?
    /// A delivery to handle; settle it with ``Delivery/settle(_:)`` when done.
    func handle(_ delivery: Delivery)
    /// A consumer changed state; `error` says why it left `consuming` or cannot get there.
    func consumerChanged(channel: String, index: Int, status: ConsumerStatus, error: String?)
    /// A settlement was written to the broker.
    func settled(channel: String, index: Int, outcome: DeliveryOutcome)
}

/// One message a queue delivered to a consumer.
public struct Delivery: Sendable {
    /// The consumer it came to (0-based).
    public var consumer: Int { worker.index }
    public let deliveryTag: UInt64
    public let redelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let properties: BasicProperties
    public let body: Data
    /// Why the message cannot be handed to a service as read (headers nested deeper than
    /// AMQP clients produce: the deeper levels were not read); nil normally.
    public let malformed: String?
    let worker: ConsumerWorker
    /// The consumer's connection it came on.
    let generation: UInt64

    /// Acks, rejects or requeues it, on the connection it came on. Returns false when that
    /// connection has ended meanwhile: the broker redelivers it (nothing was acked).
    /// With `recheck` the consumer asks ``ConsumerHandler/reasonNotToConsume()`` once it has
    /// written this, and stops consuming (backing off) if there is a reason.
    @discardableResult
    public func settle(_ outcome: DeliveryOutcome, recheck: Bool = false) -> Bool {
        worker.settle(generation: generation, tag: deliveryTag, outcome: outcome, recheck: recheck)
    }
}

/// One consumer's state, for health and the dashboard.
public struct ConsumerSnapshot: Sendable, Equatable {
    public var index: Int
    public var status: ConsumerStatus
    /// Deliveries handed to the handler and not yet settled on the broker.
    public var inFlight: Int
    /// Deliveries received since the group started.
    public var delivered: Int
    /// Why the consumer last failed or may not consume, if it has.
    public var lastError: String?
    /// Failed connection attempts and lost connections since the group started.
    public var reconnects: Int
}
