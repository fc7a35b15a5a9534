import ESBAMQP
import ESBService
import Foundation

/// Conversions between what librabbitmq reads and writes and what services see.
enum AMQPDeliveries {
    /// A date as AMQP's whole seconds since the epoch: before 1970, not finite or past
    /// `UInt64` is clamped (`send` refuses such dates before they get here).
    static func seconds(_ date: Date) -> UInt64 {
        let seconds = date.timeIntervalSince1970
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return seconds < 18_446_744_073_709_551_616 ? UInt64(seconds) : .max
    }

    static func value(_ received: HeaderValue) -> AMQPHeaderValue {
        switch received {
        case .string(let text): .string(text)
        case .int(let number): .int(Int(number))
        case .double(let number): .double(number)
        case .bool(let flag): .bool(flag)
        case .table(let table): .table(table.mapValues(value))
        case .array(let array): .array(array.map(value))
        case .timestamp(let seconds): .timestamp(Date(timeIntervalSince1970: Double(seconds)))
        case .bytes(let data): .bytes(data)
        case .void: .void
        }
    }

    static func properties(_ received: BasicProperties) -> AMQPProperties {
        AMQPProperties(
            contentType: received.contentType, contentEncoding: received.contentEncoding,
            deliveryMode: received.deliveryMode.map(Int.init), priority: received.priority.map(Int.init),
            expiration: received.expiration, userId: received.userId, appId: received.appId,
            correlationId: received.correlationId, replyTo: received.replyTo, messageId: received.messageId,
            type: received.type, timestamp: received.timestamp.map { Date(timeIntervalSince1970: Double($0)) })
    }

    /// The string-valued headers, names as sent (`request.headers` on the `amqp` channel).
    static func stringHeaders(_ headers: [String: HeaderValue]) -> [String: String] {
        var strings: [String: String] = [:]
        for case let (name, .string(text)) in headers { strings[name] = text }
        return strings
    }

    /// The message's `x-esb-cid`, when it is one a server could have made: at most 64
    /// characters of letters, digits, `.`, `_` and `-` (anything else gets a fresh cid: a
    /// cid goes into every log line of the call).
    static func cid(_ headers: [String: HeaderValue]) -> String? {
        guard case .string(let cid)? = headers["x-esb-cid"], !cid.isEmpty, cid.utf8.count <= 64,
              cid.utf8.allSatisfy({ byte in
                  (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                      || byte == 0x2E || byte == 0x5F || byte == 0x2D
              }) else { return nil }
        return cid
    }

    /// At most `limit` bytes of a body for a log line, as text (invalid UTF-8 replaced).
    static func loggable(_ body: Data, limit: Int = 64 * 1024) -> String {
        let text = String(decoding: body.prefix(limit), as: UTF8.self)
        return body.count > limit ? text + "… (\(body.count) bytes, the first \(limit) shown)" : text
    }
}
