import Foundation

/// AMQP 0-9-1 frames for Basic.Publish, encoded into one buffer: the method, content header
/// and body frames of many messages, for one `send(2)` per batch (librabbitmq writes each
/// message as three frames and has no encoder of its own to call).
///
/// The bytes are librabbitmq's for the same publish (Tests/ESBAMQPTests/FrameEncoderTests
/// compares them): header tables with keys sorted, integers as `l`, doubles as `d`, strings
/// as `S`, booleans as `t`, nested tables `F` and arrays `A`.
struct FrameEncoder {
    /// Why a message cannot be encoded (nothing of it was written).
    struct Refusal: Error {
        let reason: String
    }

    private(set) var bytes: [UInt8] = []
    /// Where the frame being written starts: its size is checked as it grows, so that a
    /// huge header is refused before it is copied whole.
    private var frameStart = 0
    var channel: UInt16
    /// The negotiated frame_max; a body is cut into frames of at most frame_max - 8 bytes.
    let frameMax: Int

    init(channel: UInt16, frameMax: Int, capacity: Int = 4096) {
        self.channel = channel
        self.frameMax = frameMax > 8 ? frameMax : 131_072
        bytes.reserveCapacity(capacity)
    }

    /// Empties the buffer, keeping its memory unless it grew past `keeping` bytes.
    mutating func removeAll(keeping: Int = 1 << 20) {
        bytes.removeAll(keepingCapacity: bytes.capacity <= keeping)
    }

    /// Appends one publish: Basic.Publish, the content header and the body frames. On a
    /// refusal the buffer is as it was.
    mutating func publish(exchange: String, routingKey: String, mandatory: Bool, properties: BasicProperties,
                          body: Data) throws(Refusal) {
        let start = bytes.count
        do throws(Refusal) {
            // Method frame: class 60 (basic), method 40 (publish), ticket 0, exchange,
            // routing key, bits (mandatory 1, immediate 2).
            let method = beginFrame(type: 1)
            appendUInt16(60)
            appendUInt16(40)
            appendUInt16(0)
            try appendShortString(exchange, "exchange")
            try appendShortString(routingKey, "routing key")
            bytes.append(mandatory ? 1 : 0)
            endFrame(method)

            // Content header frame: class 60, weight 0, body size, property flags, properties.
            let header = beginFrame(type: 2)
            appendUInt16(60)
            appendUInt16(0)
            appendUInt64(UInt64(body.count))
            try appendProperties(properties)
            try checkFrameSize()
            endFrame(header)
        } catch {
            bytes.removeSubrange(start...)
            throw error
        }

        // Body frames (none for an empty body, as librabbitmq).
        let chunk = frameMax - 8
        body.withUnsafeBytes { (body: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < body.count {
                let size = min(chunk, body.count - offset)
                let frame = beginFrame(type: 3)
                bytes.append(contentsOf: body[offset..<(offset + size)])
                endFrame(frame)
                offset += size
            }
        }
    }

    // MARK: Frames

    /// Writes type, channel and a size placeholder; returns where the payload starts.
    private mutating func beginFrame(type: UInt8) -> Int {
        frameStart = bytes.count
        bytes.append(type)
        appendUInt16(channel)
        appendUInt32(0)
        return bytes.count
    }

    /// Fills in the size and appends the frame end octet.
    private mutating func endFrame(_ payloadStart: Int) {
        let size = UInt32(truncatingIfNeeded: bytes.count - payloadStart)
        bytes[payloadStart - 4] = UInt8(truncatingIfNeeded: size >> 24)
        bytes[payloadStart - 3] = UInt8(truncatingIfNeeded: size >> 16)
        bytes[payloadStart - 2] = UInt8(truncatingIfNeeded: size >> 8)
        bytes[payloadStart - 1] = UInt8(truncatingIfNeeded: size)
        bytes.append(0xCE)
    }

    // MARK: Properties

    private mutating func appendProperties(_ properties: BasicProperties) throws(Refusal) {
        var flags: UInt16 = 0
        if properties.contentType != nil { flags |= 1 << 15 }
        if properties.contentEncoding != nil { flags |= 1 << 14 }
        if !properties.headers.isEmpty { flags |= 1 << 13 }
        if properties.deliveryMode != nil { flags |= 1 << 12 }
        if properties.priority != nil { flags |= 1 << 11 }
        if properties.correlationId != nil { flags |= 1 << 10 }
        if properties.replyTo != nil { flags |= 1 << 9 }
        if properties.expiration != nil { flags |= 1 << 8 }
        if properties.messageId != nil { flags |= 1 << 7 }
        if properties.timestamp != nil { flags |= 1 << 6 }
        if properties.type != nil { flags |= 1 << 5 }
        if properties.userId != nil { flags |= 1 << 4 }
        if properties.appId != nil { flags |= 1 << 3 }
        appendUInt16(flags)
        if let value = properties.contentType { try appendShortString(value, "content type") }
        if let value = properties.contentEncoding { try appendShortString(value, "content encoding") }
        if !properties.headers.isEmpty { try appendTable(properties.headers) }
        if let value = properties.deliveryMode { bytes.append(value) }
        if let value = properties.priority { bytes.append(value) }
        if let value = properties.correlationId { try appendShortString(value, "correlation id") }
        if let value = properties.replyTo { try appendShortString(value, "reply-to") }
        if let value = properties.expiration { try appendShortString(String(value), "expiration") }
        if let value = properties.messageId { try appendShortString(value, "message id") }
        if let value = properties.timestamp { appendUInt64(value) }
        if let value = properties.type { try appendShortString(value, "type") }
        if let value = properties.userId { try appendShortString(value, "user id") }
        if let value = properties.appId { try appendShortString(value, "app id") }
    }

    /// A field table: its byte length, then each key (short string), kind and value; keys
    /// sorted, so the wire order is stable.
    private mutating func appendTable(_ table: [String: HeaderValue]) throws(Refusal) {
        let lengthAt = bytes.count
        appendUInt32(0)
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            try appendShortString(key, "header name '\(key.prefix(40))'")
            try appendField(value)
            try checkFrameSize()
        }
        patchLength(at: lengthAt)
    }

    private mutating func appendField(_ value: HeaderValue) throws(Refusal) {
        switch value {
        case .string(let text):
            bytes.append(UInt8(ascii: "S"))
            try appendLongString(text)
        case .int(let number):
            bytes.append(UInt8(ascii: "l"))
            appendUInt64(UInt64(bitPattern: number))
        case .double(let number):
            bytes.append(UInt8(ascii: "d"))
            appendUInt64(number.bitPattern)
        case .bool(let flag):
            bytes.append(UInt8(ascii: "t"))
            bytes.append(flag ? 1 : 0)
        case .table(let nested):
            bytes.append(UInt8(ascii: "F"))
            try appendTable(nested)
        case .array(let elements):
            bytes.append(UInt8(ascii: "A"))
            let lengthAt = bytes.count
            appendUInt32(0)
            for element in elements {
                try appendField(element)
                try checkFrameSize()
            }
            patchLength(at: lengthAt)
        case .timestamp(let seconds):
            bytes.append(UInt8(ascii: "T"))
            appendUInt64(seconds)
        case .bytes(let data):
            bytes.append(UInt8(ascii: "x"))
            try checkFrameSize(adding: 4 + data.count)
            appendUInt32(UInt32(data.count))
            bytes.append(contentsOf: data)
        case .void:
            bytes.append(UInt8(ascii: "V"))
        }
    }

    private mutating func patchLength(at position: Int) {
        let length = UInt32(truncatingIfNeeded: bytes.count - position - 4)
        bytes[position] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[position + 1] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[position + 2] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[position + 3] = UInt8(truncatingIfNeeded: length)
    }

    // MARK: Primitives (network byte order)

    private mutating func appendShortString(_ text: String, _ what: String) throws(Refusal) {
        let count = text.utf8.count
        guard count <= 255 else { throw Refusal(reason: "the \(what) is \(count) bytes long; AMQP allows at most 255") }
        bytes.append(UInt8(count))
        bytes.append(contentsOf: text.utf8)
    }

    /// A frame (with its 8 bytes of framing) holds at most frame_max bytes.
    private func checkFrameSize(adding extra: Int = 0) throws(Refusal) {
        let size = bytes.count - frameStart + 1 + extra
        guard size <= frameMax else {
            throw Refusal(reason: "the properties and headers take more than \(frameMax) bytes, the most a frame holds")
        }
    }

    private mutating func appendLongString(_ text: String) throws(Refusal) {
        let count = text.utf8.count
        try checkFrameSize(adding: 4 + count)
        appendUInt32(UInt32(count))
        bytes.append(contentsOf: text.utf8)
    }

    private mutating func appendUInt16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    private mutating func appendUInt32(_ value: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 24))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    private mutating func appendUInt64(_ value: UInt64) {
        appendUInt32(UInt32(truncatingIfNeeded: value >> 32))
        appendUInt32(UInt32(truncatingIfNeeded: value))
    }
}
