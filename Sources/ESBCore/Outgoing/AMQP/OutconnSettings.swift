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

    /// Builds the settings from the stored objects (both already validated by the store).
    init(outconn: ObjectFields, definition: ObjectFields, password: String?) {
        var broker = BrokerConfiguration(host: definition["host"]?.string ?? "")
        broker.port = definition["port"]?.int ?? 5672
        broker.virtualHost = definition["vhost"]?.string ?? "/"
        broker.username = definition["username"]?.string ?? ""
        broker.password = password ?? ""
        broker.frameMax = definition["frame_max"]?.int ?? 131_072
        broker.heartbeatSeconds = definition["heartbeat"]?.int ?? 30
        broker.connectTimeoutMilliseconds = definition["connect_timeout_ms"]?.int ?? 5000
        broker.tls = definition["tls"]?.bool ?? false
        broker.tlsCAPath = definition["tls_ca_path"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        broker.tlsVerify = definition["tls_verify"]?.bool ?? true
        var pool = PoolConfiguration(name: outconn["name"]?.string ?? "", broker: broker)
        pool.size = outconn["pool_size"]?.int ?? 4
        pool.confirm = outconn["confirm"]?.bool ?? true
        pool.confirmTimeoutMilliseconds = outconn["confirm_timeout_ms"]?.int ?? 5000
        pool.acquireTimeoutMilliseconds = outconn["acquire_timeout_ms"]?.int ?? 5000
        self.pool = pool
        isActive = outconn["is_active"]?.bool ?? true
        mandatory = outconn["mandatory"]?.bool ?? true
        defaults = AMQPProperties(
            contentType: outconn["content_type"]?.string, contentEncoding: outconn["content_encoding"]?.string,
            deliveryMode: outconn["delivery_mode"]?.int, priority: outconn["priority"]?.int,
            expiration: outconn["expiration"]?.int, userId: outconn["user_id"]?.string, appId: outconn["app_id"]?.string)
    }

    /// §4's merge rule: the call's value, else the outconn's default; unset ones are not sent.
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
            timestamp: call.timestamp.map { UInt64(max(0, $0.timeIntervalSince1970)) },
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
        }
    }
}
