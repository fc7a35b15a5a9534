import Foundation

/// What a service receives: the payload and where it came from.
public struct ServiceRequest: Sendable {
    /// The raw payload.
    public var payload: Data
    /// The channel the call came through: `http`, `invoke`, `invoke-async`, `startup-service`, `callback`, `amqp`, …
    public var channel: String
    /// The correlation id of this call.
    public var cid: String
    /// Request headers (HTTP channels), lower-cased names.
    public var headers: [String: String]
    /// Query string parameters (HTTP channels).
    public var query: [String: String]
    /// Values of `{param}` segments of the channel's URL path.
    public var pathParameters: [String: String]
    /// The delivery, on the `amqp` channel (a queue consumed by an AMQP channel); nil on others.
    public var amqp: AMQPDelivery?

    /// Creates a request; `esbd` builds these, tests may too.
    public init(
        payload: Data = Data(), channel: String = "invoke", cid: String = "",
        headers: [String: String] = [:], query: [String: String] = [:],
        pathParameters: [String: String] = [:], amqp: AMQPDelivery? = nil
    ) {
        self.payload = payload
        self.channel = channel
        self.cid = cid
        self.headers = headers
        self.query = query
        self.pathParameters = pathParameters
        self.amqp = amqp
    }

    /// Creates a request from a UTF-8 text payload.
    public init(
        payload: String, channel: String = "invoke", cid: String = "",
        headers: [String: String] = [:], query: [String: String] = [:],
        pathParameters: [String: String] = [:], amqp: AMQPDelivery? = nil
    ) {
        self.init(payload: Data(payload.utf8), channel: channel, cid: cid,
                  headers: headers, query: query, pathParameters: pathParameters, amqp: amqp)
    }

    /// The payload decoded as UTF-8 (invalid bytes replaced).
    public var text: String { String(decoding: payload, as: UTF8.self) }

    /// Decodes the JSON payload.
    /// - Throws: ``ServiceError`` with code `request.invalid_json` naming the type and the cause.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: payload)
        } catch {
            throw ServiceError(.invalidJSON, "cannot decode \(T.self) from the request payload: \(error)")
        }
    }
}
