import Foundation

/// A value in an AMQP field table (message headers).
public indirect enum HeaderValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case table([String: HeaderValue])
    case array([HeaderValue])
    /// Seconds since the epoch.
    case timestamp(UInt64)
    case bytes(Data)
    case void
}

/// AMQP basic properties; `nil` fields are not sent.
public struct BasicProperties: Sendable, Equatable {
    public var contentType: String?
    public var contentEncoding: String?
    /// 1 transient, 2 persistent.
    public var deliveryMode: UInt8?
    /// 0–9.
    public var priority: UInt8?
    public var correlationId: String?
    public var replyTo: String?
    /// Milliseconds, sent as the decimal string AMQP expects.
    public var expiration: Int?
    public var messageId: String?
    /// Seconds since the epoch.
    public var timestamp: UInt64?
    public var type: String?
    public var userId: String?
    public var appId: String?
    public var headers: [String: HeaderValue]

    public init(contentType: String? = nil, contentEncoding: String? = nil, deliveryMode: UInt8? = nil,
                priority: UInt8? = nil, correlationId: String? = nil, replyTo: String? = nil,
                expiration: Int? = nil, messageId: String? = nil, timestamp: UInt64? = nil, type: String? = nil,
                userId: String? = nil, appId: String? = nil, headers: [String: HeaderValue] = [:]) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageId = messageId
        self.timestamp = timestamp
        self.type = type
        self.userId = userId
        self.appId = appId
        self.headers = headers
    }
}

/// One message to publish.
public struct OutgoingMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: Data
    public var properties: BasicProperties
    /// Ask the broker to return the message when no queue takes it.
    public var mandatory: Bool

    public init(exchange: String, routingKey: String, body: Data, properties: BasicProperties = .init(),
                mandatory: Bool = true) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}
