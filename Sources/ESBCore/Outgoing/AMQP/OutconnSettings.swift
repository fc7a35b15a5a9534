import ESBAMQP
import ESBService
import Foundation

/// One `outconn_amqp` with its definition, as the pool and `send` need it.
struct OutconnSettings: Sendable, Equatable {
    var pool: PoolConfiguration
    var isActive: Bool
    /// Per-message defaults from the outconn; a call's own values win.
    var defaults: AMQPProperties
    var mandatory: Bool

    /// The header a mandatory message carries its delivery tag in, to match a return to its send.
    static let returnTagHeader = "x-esb-msg-id"

    /// Builds the settings from the stored objects; every field is set, from the object or
    /// the field table's default (the client library's own defaults never apply).
    init(outconn fields: ObjectFields, definition definitionFields: ObjectFields, password: String?) {
        let outconn = ObjectValues(ObjectKinds.amqpOutconn, fields)
        let broker = Self.broker(definitionFields, password: password)
        var pool = PoolConfiguration(name: outconn.name, broker: broker, returnTagHeader: Self.returnTagHeader)
        pool.size = outconn.int("pool_size")
        pool.confirm = outconn.bool("confirm")
        pool.confirmTimeoutMilliseconds = outconn.int("confirm_timeout_ms")
        pool.acquireTimeoutMilliseconds = outconn.int("acquire_timeout_ms")
        self.pool = pool
        isActive = outconn.bool("is_active")
        mandatory = outconn.bool("mandatory")
        defaults = AMQPProperties(
            contentType: outconn["content_type"].string, contentEncoding: outconn["content_encoding"].string,
            deliveryMode: outconn["delivery_mode"].int, priority: outconn["priority"].int,
            expiration: outconn["expiration"].int, userId: outconn["user_id"].string, appId: outconn["app_id"].string)
    }

    /// A `def_amqp` object's broker, every field set from the object or its default.
    static func broker(_ fields: ObjectFields, password: String?) -> BrokerConfiguration {
        let definition = ObjectValues(ObjectKinds.amqpDefinition, fields)
        var broker = BrokerConfiguration(host: definition.string("host"))
        broker.port = definition.int("port")
        broker.virtualHost = definition.string("vhost")
        broker.username = definition.string("username")
        broker.password = password ?? ""
        broker.frameMax = definition.int("frame_max")
        broker.heartbeatSeconds = definition.int("heartbeat")
        broker.connectTimeoutMilliseconds = definition.int("connect_timeout_ms")
        broker.tls = definition.bool("tls")
        broker.tlsCAPath = definition["tls_ca_path"].string.flatMap { $0.isEmpty ? nil : $0 }
        broker.tlsVerify = definition.bool("tls_verify")
        return broker
    }

    /// The call's value, else the outconn's default; unset ones are not sent.
    /// Headers pass through, plus `x-esb-cid`.
    func message(_ body: Data, exchange: String, routingKey: String, properties call: AMQPProperties,
                 headers: [String: AMQPHeaderValue], cid: String) -> OutgoingMessage {
        var merged = BasicProperties(
            contentType: call.contentType ?? defaults.contentType,
            contentEncoding: call.contentEncoding ?? defaults.contentEncoding,
            deliveryMode: (call.deliveryMode ?? defaults.deliveryMode).map { UInt8(clamping: $0) },
            priority: (call.priority ?? defaults.priority).map { UInt8(clamping: $0) },
            correlationId: call.correlationId, replyTo: call.replyTo,
            expiration: call.expiration ?? defaults.expiration,
            messageId: call.messageId,
            timestamp: call.timestamp.map(AMQPDeliveries.seconds),
            type: call.type,
            userId: call.userId ?? defaults.userId,
            appId: call.appId ?? defaults.appId)
        merged.headers = headers.mapValues(Self.field)
        merged.headers["x-esb-cid"] = .string(cid)
        return OutgoingMessage(exchange: exchange, routingKey: routingKey, body: body, properties: merged, mandatory: mandatory)
    }

    static func field(_ value: AMQPHeaderValue) -> HeaderValue {
        switch value {
        case .string(let text): .string(text)
        case .int(let number): .int(Int64(number))
        case .double(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .table(let table): .table(table.mapValues(field))
        case .array(let array): .array(array.map(field))
        case .timestamp(let date): .timestamp(AMQPDeliveries.seconds(date))
        case .bytes(let data): .bytes(data)
        case .void: .void
        }
    }
}
