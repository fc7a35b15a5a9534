import Foundation

/// Outgoing connections defined in the server (`outconn_amqp`, `outconn_plain_http`).
public struct Outgoing: Sendable {
    let context: ServiceContext

    /// Pooled, confirmed AMQP outgoing connections.
    public var amqp: AMQPOutgoing { AMQPOutgoing(context: context) }
    /// Outgoing HTTP connections, by name: `outgoing.http["crm"]`.
    public var http: HTTPOutgoing { HTTPOutgoing(context: context) }
}

/// Sends to RabbitMQ through an outgoing AMQP connection.
public struct AMQPOutgoing: Sendable {
    let context: ServiceContext

    /// Publishes `message` and, with publisher confirms on (the default), returns only once
    /// the broker has acknowledged it.
    ///
    /// Properties given here win over the outconn's defaults; unset ones are not sent.
    /// - Throws: ``ServiceError`` `amqp.unknown_outconn`, `amqp.inactive`, `amqp.returned`
    ///   (with reply code and text), `amqp.nacked`, `amqp.confirm_timeout`,
    ///   `amqp.connection_failed`, `amqp.channel_closed`, `amqp.pool_timeout`.
    public func send(_ message: Data, outconn: String, exchange: String, routingKey: String,
                     properties: AMQPProperties = .init(), headers: [String: AMQPHeaderValue] = [:]) async throws {
        try await context.host.amqpSend(message, outconn: outconn, exchange: exchange, routingKey: routingKey,
                                        properties: properties, headers: headers, from: context)
    }

    /// ``send(_:outconn:exchange:routingKey:properties:headers:)`` with a UTF-8 text message.
    public func send(_ message: String, outconn: String, exchange: String, routingKey: String,
                     properties: AMQPProperties = .init(), headers: [String: AMQPHeaderValue] = [:]) async throws {
        try await send(Data(message.utf8), outconn: outconn, exchange: exchange, routingKey: routingKey,
                       properties: properties, headers: headers)
    }
}

/// AMQP basic properties of one message; `nil` means "use the outconn's default, if any".
public struct AMQPProperties: Sendable, Equatable {
    public var contentType: String?
    public var contentEncoding: String?
    /// 1 transient, 2 persistent.
    public var deliveryMode: Int?
    /// 0–9.
    public var priority: Int?
    /// Milliseconds.
    public var expiration: Int?
    public var userId: String?
    public var appId: String?
    public var correlationId: String?
    public var replyTo: String?
    public var messageId: String?
    public var type: String?
    public var timestamp: Date?

    public init(contentType: String? = nil, contentEncoding: String? = nil, deliveryMode: Int? = nil,
                priority: Int? = nil, expiration: Int? = nil, userId: String? = nil, appId: String? = nil,
                correlationId: String? = nil, replyTo: String? = nil, messageId: String? = nil,
                type: String? = nil, timestamp: Date? = nil) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.expiration = expiration
        self.userId = userId
        self.appId = appId
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.messageId = messageId
        self.type = type
        self.timestamp = timestamp
    }
}

/// A value in an AMQP headers table.
public indirect enum AMQPHeaderValue: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case table([String: AMQPHeaderValue])
    case array([AMQPHeaderValue])
    /// An AMQP timestamp: whole seconds since the epoch.
    case timestamp(Date)
    /// An AMQP byte array.
    case bytes(Data)
    /// An AMQP void (no value).
    case void

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: AMQPHeaderValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, AMQPHeaderValue)...) {
        self = .table(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
}

/// One message a queue delivered to a service through an AMQP channel (`request.amqp`).
public struct AMQPDelivery: Sendable, Equatable {
    /// The exchange it was published to (empty: the default exchange).
    public var exchange: String
    public var routingKey: String
    /// The broker delivered it before, to this or another consumer that did not ack it:
    /// the service may already have handled it (at least once).
    public var redelivered: Bool
    /// The broker's tag, unique per channel and connection (not across reconnects).
    public var deliveryTag: UInt64
    /// Which call of the service this is for this delivery, from 1 up to the channel's
    /// `max_attempts`; it starts at 1 again after a redelivery.
    public var attempt: Int
    public var properties: AMQPProperties
    /// Every header, with its AMQP type (`request.headers` holds the string-valued ones).
    public var headers: [String: AMQPHeaderValue]

    public init(exchange: String = "", routingKey: String = "", redelivered: Bool = false, deliveryTag: UInt64 = 0,
                attempt: Int = 1, properties: AMQPProperties = .init(), headers: [String: AMQPHeaderValue] = [:]) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.deliveryTag = deliveryTag
        self.attempt = attempt
        self.properties = properties
        self.headers = headers
    }
}

/// Outgoing HTTP connections by name.
public struct HTTPOutgoing: Sendable {
    let context: ServiceContext

    /// The connection called `name`; errors surface when it is used.
    public subscript(name: String) -> HTTPConnection { HTTPConnection(name: name, context: context) }
}

/// One outgoing HTTP connection (`outconn_plain_http`): address, path, format and security
/// come from its definition; calls add path parameters, query, headers and a body.
public struct HTTPConnection: Sendable {
    /// The connection's name.
    public let name: String
    let context: ServiceContext

    // The String and Encodable overloads call this, never the `Data?` overload: `Data` is
    // Encodable, so `body: Data(…)` could resolve to the Encodable overload and recurse.
    func send(_ method: String, path: [String: String], query: [String: String], headers: [String: String],
              body: Data?) async throws -> OutgoingHTTPResponse {
        try await context.host.httpRequest(
            OutgoingHTTPRequest(connection: name, method: method, pathParameters: path, query: query,
                                headers: headers, body: body),
            from: context)
    }

    /// An Encodable body as JSON; `Data` and `String` (which are Encodable too, and may land
    /// here through overload resolution) are sent as they are.
    static func encode(_ body: some Encodable) throws -> Data {
        if let data = body as? Data { return data }
        if let text = body as? String { return Data(text.utf8) }
        return try JSONEncoder().encode(body)
    }

    public func get(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: Data? = nil) async throws -> OutgoingHTTPResponse {
        try await send("GET", path: path, query: query, headers: headers, body: body)
    }
    public func post(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                     body: Data? = nil) async throws -> OutgoingHTTPResponse {
        try await send("POST", path: path, query: query, headers: headers, body: body)
    }
    public func put(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: Data? = nil) async throws -> OutgoingHTTPResponse {
        try await send("PUT", path: path, query: query, headers: headers, body: body)
    }
    public func patch(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                      body: Data? = nil) async throws -> OutgoingHTTPResponse {
        try await send("PATCH", path: path, query: query, headers: headers, body: body)
    }
    public func delete(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                       body: Data? = nil) async throws -> OutgoingHTTPResponse {
        try await send("DELETE", path: path, query: query, headers: headers, body: body)
    }

    public func get(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: String) async throws -> OutgoingHTTPResponse {
        try await send("GET", path: path, query: query, headers: headers, body: Data(body.utf8))
    }
    public func post(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                     body: String) async throws -> OutgoingHTTPResponse {
        try await send("POST", path: path, query: query, headers: headers, body: Data(body.utf8))
    }
    public func put(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: String) async throws -> OutgoingHTTPResponse {
        try await send("PUT", path: path, query: query, headers: headers, body: Data(body.utf8))
    }
    public func patch(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                      body: String) async throws -> OutgoingHTTPResponse {
        try await send("PATCH", path: path, query: query, headers: headers, body: Data(body.utf8))
    }
    public func delete(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                       body: String) async throws -> OutgoingHTTPResponse {
        try await send("DELETE", path: path, query: query, headers: headers, body: Data(body.utf8))
    }

    public func get(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: some Encodable) async throws -> OutgoingHTTPResponse {
        try await send("GET", path: path, query: query, headers: headers, body: try Self.encode(body))
    }
    public func post(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                     body: some Encodable) async throws -> OutgoingHTTPResponse {
        try await send("POST", path: path, query: query, headers: headers, body: try Self.encode(body))
    }
    public func put(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                    body: some Encodable) async throws -> OutgoingHTTPResponse {
        try await send("PUT", path: path, query: query, headers: headers, body: try Self.encode(body))
    }
    public func patch(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                      body: some Encodable) async throws -> OutgoingHTTPResponse {
        try await send("PATCH", path: path, query: query, headers: headers, body: try Self.encode(body))
    }
    public func delete(path: [String: String] = [:], query: [String: String] = [:], headers: [String: String] = [:],
                       body: some Encodable) async throws -> OutgoingHTTPResponse {
        try await send("DELETE", path: path, query: query, headers: headers, body: try Self.encode(body))
    }
}

/// What a service asks of an outgoing HTTP connection; built by ``HTTPConnection``.
public struct OutgoingHTTPRequest: Sendable {
    public var connection: String
    public var method: String
    public var pathParameters: [String: String]
    public var query: [String: String]
    public var headers: [String: String]
    public var body: Data?
}

/// The answer of an outgoing HTTP call.
public struct OutgoingHTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased.
    public var headers: [String: String]
    public var payload: Data

    public init(status: Int, headers: [String: String], payload: Data) {
        self.status = status
        self.headers = headers
        self.payload = payload
    }

    /// The body as UTF-8 text.
    public var text: String { String(decoding: payload, as: UTF8.self) }

    /// Decodes the JSON body.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: payload)
        } catch {
            throw ServiceError(.invalidJSON, "cannot decode \(T.self) from the HTTP response: \(error)")
        }
    }
}
