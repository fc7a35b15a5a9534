import CESBRabbitMQ
import Foundation

/// A message the broker delivered on a connection, as read off the wire.
struct IncomingDelivery: Sendable {
    var deliveryTag: UInt64
    var redelivered: Bool
    var exchange: String
    var routingKey: String
    var properties: BasicProperties
    var body: Data
    /// Why the message cannot be handed to a service as read (headers nested too deep).
    var malformed: String?
}

/// A consumer's calls: prefetch, consume, cancel, ack and reject, and reading a delivery.
extension Connection {
    /// `basic.qos` with `prefetch` unacked messages, then `basic.consume` of `queue` (acks
    /// on) under `consumerTag`. A missing queue is the broker's channel.close 404, reported
    /// as such.
    func consume(queue: String, prefetch: Int, consumerTag: String) throws(AMQPError) {
        _ = amqp_basic_qos(state, channel, 0, UInt16(clamping: prefetch), 0)
        try check(amqp_get_rpc_reply(state), "basic.qos")
        let arena = CArena()
        _ = amqp_basic_consume(state, channel, arena.bytes(queue), arena.bytes(consumerTag), 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "consuming queue '\(queue)'")
    }

    /// Sends `basic.cancel` without waiting for its `cancel-ok` (read later as another
    /// frame): the broker stops delivering; what it delivered stays unacked until settled.
    func cancel(consumerTag: String) throws(AMQPError) {
        let arena = CArena()
        var cancel = amqp_basic_cancel_t(consumer_tag: arena.bytes(consumerTag), nowait: 0)
        let status = amqp_send_method(state, channel, CESB_BASIC_CANCEL, &cancel)
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("basic.cancel: \(Self.describe(status))") }
    }

    /// Acks one delivery.
    func ack(_ deliveryTag: UInt64) throws(AMQPError) {
        let status = amqp_basic_ack(state, channel, deliveryTag, 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("basic.ack: \(Self.describe(status))") }
    }

    /// Rejects one delivery: back to the queue with `requeue`, else to its dead-letter
    /// exchange (or dropped by the broker when the queue has none).
    func reject(_ deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let status = amqp_basic_reject(state, channel, deliveryTag, requeue ? 1 : 0)
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("basic.reject: \(Self.describe(status))") }
    }

    /// The content (header and body frames) that follows a Basic.Deliver at once.
    func readDelivery(_ deliver: amqp_basic_deliver_t) throws(AMQPError) -> IncomingDelivery {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            try check(reply, "reading a delivery")
            throw failure("reading a delivery: no content")
        }
        defer { amqp_destroy_message(&message) }
        let body = message.body.len > 0 && message.body.bytes != nil
            ? Data(bytes: message.body.bytes, count: message.body.len) : Data()
        var tooDeep = false
        let properties = Self.properties(message.properties, tooDeep: &tooDeep)
        return IncomingDelivery(deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0,
                                exchange: Self.string(deliver.exchange), routingKey: Self.string(deliver.routing_key),
                                properties: properties, body: body,
                                malformed: tooDeep ? "its headers nest tables or arrays deeper than \(CArena.maximumDepth) levels" : nil)
    }

    /// Basic properties as received; an expiration that is not a whole number is dropped.
    static func properties(_ received: amqp_basic_properties_t, tooDeep: inout Bool) -> BasicProperties {
        let flags = received._flags
        func has(_ flag: Int32) -> Bool { flags & amqp_flags_t(flag) != 0 }
        func text(_ flag: Int32, _ bytes: amqp_bytes_t) -> String? { has(flag) ? string(bytes) : nil }
        var properties = BasicProperties()
        properties.contentType = text(AMQP_BASIC_CONTENT_TYPE_FLAG, received.content_type)
        properties.contentEncoding = text(AMQP_BASIC_CONTENT_ENCODING_FLAG, received.content_encoding)
        properties.correlationId = text(AMQP_BASIC_CORRELATION_ID_FLAG, received.correlation_id)
        properties.replyTo = text(AMQP_BASIC_REPLY_TO_FLAG, received.reply_to)
        properties.expiration = text(AMQP_BASIC_EXPIRATION_FLAG, received.expiration).flatMap { Int($0) }
        properties.messageId = text(AMQP_BASIC_MESSAGE_ID_FLAG, received.message_id)
        properties.type = text(AMQP_BASIC_TYPE_FLAG, received.type)
        properties.userId = text(AMQP_BASIC_USER_ID_FLAG, received.user_id)
        properties.appId = text(AMQP_BASIC_APP_ID_FLAG, received.app_id)
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { properties.deliveryMode = received.delivery_mode }
        if has(AMQP_BASIC_PRIORITY_FLAG) { properties.priority = received.priority }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { properties.timestamp = received.timestamp }
        if has(AMQP_BASIC_HEADERS_FLAG) { properties.headers = CArena.decode(received.headers, tooDeep: &tooDeep) }
        return properties
    }
}
