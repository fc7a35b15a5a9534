import ESBAMQP
import Foundation

/// One `channel_amqp` with its definition, as its consumers and their handler need it.
struct AMQPChannelSettings: Sendable, Equatable {
    var consumers: ConsumerConfiguration
    var service: String
    var isActive: Bool
    var maxAttempts: Int
    var retryDelayMilliseconds: Int
    /// `text`, `json` or `xml`.
    var dataFormat: String

    var name: String { consumers.name }

    /// Every field set, from the object or the field table's default. Consumer tags name the
    /// server and the channel (`esb.server1.orders.0`), for the broker's listings.
    init(channel fields: ObjectFields, definition: ObjectFields, password: String?, server: String) {
        let channel = ObjectValues(ObjectKinds.amqpChannel, fields)
        let prefix = String(decoding: "esb.\(server).\(channel.name)".utf8.prefix(240), as: UTF8.self)
        var consumers = ConsumerConfiguration(name: channel.name, broker: OutconnSettings.broker(definition, password: password),
                                              queue: channel.string("queue"), consumerTagPrefix: prefix)
        consumers.consumers = channel.int("consumers")
        consumers.prefetch = channel.int("prefetch")
        self.consumers = consumers
        service = channel.string("service")
        isActive = channel.bool("is_active")
        maxAttempts = channel.int("max_attempts")
        retryDelayMilliseconds = channel.int("retry_delay_ms")
        dataFormat = channel.string("data_format")
    }
}
