import ESBCore
import ESBService
import Foundation
import Hummingbird
import NIOFoundationCompat

/// `POST /esb/api/outgoing/amqp/{name}/publish`: a test publish through an outconn, with
/// the same merge rule, confirms and errors as a service's `send`.
struct AMQPRoutes {
    let amqp: AMQPOutconns

    /// `{payload, exchange, routing_key, properties, headers}`; payload is text (a JSON
    /// value other than a string is sent as its JSON).
    struct PublishRequest: Decodable {
        var payload: JSONValue?
        var exchange: String?
        var routingKey: String
        var properties: Properties?
        var headers: [String: JSONValue]?

        struct Properties: Decodable {
            var contentType, contentEncoding, userId, appId, correlationId, replyTo, messageId, type: String?
            var deliveryMode, priority, expiration: Int?
            /// Seconds since the epoch.
            var timestamp: Double?

            enum CodingKeys: String, CodingKey {
                case contentType = "content_type", contentEncoding = "content_encoding", userId = "user_id", appId = "app_id"
                case correlationId = "correlation_id", replyTo = "reply_to", messageId = "message_id", type
                case deliveryMode = "delivery_mode", priority, expiration, timestamp
            }
        }

        enum CodingKeys: String, CodingKey {
            case payload, exchange, routingKey = "routing_key", properties, headers
        }
    }

    struct PublishResult: Encodable {
        var cid: String
        var status: Status

        enum Status: String, Encodable, CaseIterable {
            /// The broker acked it.
            case confirmed
            /// Confirms are off: written to the socket.
            case written
        }
    }

    func register(on api: RouterGroup<ESBRequestContext>) {
        api.post("outgoing/amqp/{name}/publish") { request, context in
            let name = try context.parameters.decoded("name")
            let buffer = try await request.body.collect(upTo: 16 << 20)
            let publish = try JSON.decodeBody(PublishRequest.self, from: Data(buffer: buffer), what: "publish to '\(name)'",
                                              expected: "{payload, exchange, routing_key, properties, headers}")
            if let priority = publish.properties?.priority, !(0...9).contains(priority) {
                throw APIError(.unprocessableContent, code: "invalid", "publish to '\(name)': priority must be 0...9", field: "properties.priority")
            }
            if let mode = publish.properties?.deliveryMode, !(1...2).contains(mode) {
                throw APIError(.unprocessableContent, code: "invalid", "publish to '\(name)': delivery_mode must be 1 or 2", field: "properties.delivery_mode")
            }
            let cid = ServiceInvoker.newCID()
            do {
                let confirmed = try await amqp.send(publish.body, outconn: name, exchange: publish.exchange ?? "",
                                                    routingKey: publish.routingKey, properties: publish.amqpProperties,
                                                    headers: publish.amqpHeaders, cid: cid)
                return try JSON.response(PublishResult(cid: cid, status: confirmed ? .confirmed : .written))
            } catch let error as ServiceError {
                throw APIError(ErrorStatuses.publish(error), code: error.code.rawValue, error.message)
            }
        }
    }
}

extension AMQPRoutes.PublishRequest {
    var body: Data {
        switch payload {
        case .string(let text)?: Data(text.utf8)
        case nil, .null?: Data()
        case let value?: value.json
        }
    }

    var amqpProperties: AMQPProperties {
        guard let properties else { return AMQPProperties() }
        return AMQPProperties(
            contentType: properties.contentType, contentEncoding: properties.contentEncoding,
            deliveryMode: properties.deliveryMode, priority: properties.priority, expiration: properties.expiration,
            userId: properties.userId, appId: properties.appId, correlationId: properties.correlationId,
            replyTo: properties.replyTo, messageId: properties.messageId, type: properties.type,
            timestamp: properties.timestamp.map { Date(timeIntervalSince1970: $0) })
    }

    var amqpHeaders: [String: AMQPHeaderValue] { (headers ?? [:]).mapValues(\.header) }
}

/// Any JSON value of a request body.
indirect enum JSONValue: Decodable, Sendable {
    case string(String), int(Int), double(Double), bool(Bool), array([JSONValue]), object([String: JSONValue]), null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    /// As an AMQP header value (null is AMQP's void).
    var header: AMQPHeaderValue {
        switch self {
        case .string(let text): .string(text)
        case .int(let number): .int(number)
        case .double(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .array(let values): .array(values.map(\.header))
        case .object(let fields): .table(fields.mapValues(\.header))
        case .null: .void
        }
    }

    var foundation: Any {
        switch self {
        case .string(let text): text
        case .int(let number): number
        case .double(let number): number
        case .bool(let flag): flag
        case .array(let values): values.map(\.foundation)
        case .object(let fields): fields.mapValues(\.foundation)
        case .null: NSNull()
        }
    }

    var json: Data {
        (try? JSONSerialization.data(withJSONObject: foundation, options: [.sortedKeys, .fragmentsAllowed])) ?? Data()
    }
}
