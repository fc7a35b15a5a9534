import CESBRabbitMQ
import Foundation

/// C memory for one publish (strings, tables) that lives until the arena is released.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit { allocations.forEach { free($0) } }

    /// A copy of the string's UTF-8 bytes.
    func bytes(_ string: String) -> amqp_bytes_t {
        var utf8 = string.utf8CString
        let count = utf8.count - 1
        let memory = allocate(max(count, 1))
        utf8.withUnsafeMutableBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: count) }
        return cesb_amqp_bytes(memory, count)
    }

    private func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        let memory = malloc(size)!
        allocations.append(memory)
        return memory
    }

    /// Basic properties with flags for the fields that are set.
    func properties(_ properties: BasicProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func set(_ value: String?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            result[keyPath: field] = bytes(value)
            flags |= UInt32(flag)
        }
        set(properties.contentType, AMQP_BASIC_CONTENT_TYPE_FLAG, \.content_type)
        set(properties.contentEncoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, \.content_encoding)
        set(properties.correlationId, AMQP_BASIC_CORRELATION_ID_FLAG, \.correlation_id)
        set(properties.replyTo, AMQP_BASIC_REPLY_TO_FLAG, \.reply_to)
        set(properties.expiration.map(String.init), AMQP_BASIC_EXPIRATION_FLAG, \.expiration)
        set(properties.messageId, AMQP_BASIC_MESSAGE_ID_FLAG, \.message_id)
        set(properties.type, AMQP_BASIC_TYPE_FLAG, \.type)
        set(properties.userId, AMQP_BASIC_USER_ID_FLAG, \.user_id)
        set(properties.appId, AMQP_BASIC_APP_ID_FLAG, \.app_id)
        if let mode = properties.deliveryMode {
            result.delivery_mode = mode
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        }
        if let priority = properties.priority {
            result.priority = priority
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
        }
        if let timestamp = properties.timestamp {
            result.timestamp = timestamp
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
        }
        if !properties.headers.isEmpty {
            result.headers = table(properties.headers)
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
        }
        result._flags = flags
        return result
    }

    /// A field table, keys sorted so the wire order is stable.
    func table(_ fields: [String: HeaderValue]) -> amqp_table_t {
        let entries = allocate(max(fields.count, 1) * MemoryLayout<amqp_table_entry_t>.stride)
            .bindMemory(to: amqp_table_entry_t.self, capacity: fields.count)
        for (index, (key, value)) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
            (entries + index).initialize(to: amqp_table_entry_t(key: bytes(key), value: field(value)))
        }
        return amqp_table_t(num_entries: Int32(fields.count), entries: entries)
    }

    private func field(_ value: HeaderValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let text):
            field.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
            field.value.bytes = bytes(text)
        case .int(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
            field.value.i64 = number
        case .double(let number):
            field.kind = UInt8(AMQP_FIELD_KIND_F64.rawValue)
            field.value.f64 = number
        case .bool(let flag):
            field.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
            field.value.boolean = flag ? 1 : 0
        case .table(let nested):
            field.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
            field.value.table = table(nested)
        case .array(let elements):
            let values = allocate(max(elements.count, 1) * MemoryLayout<amqp_field_value_t>.stride)
                .bindMemory(to: amqp_field_value_t.self, capacity: elements.count)
            for (index, element) in elements.enumerated() { (values + index).initialize(to: self.field(element)) }
            field.kind = UInt8(AMQP_FIELD_KIND_ARRAY.rawValue)
            field.value.array = amqp_array_t(num_entries: Int32(elements.count), entries: values)
        case .timestamp(let seconds):
            field.kind = UInt8(AMQP_FIELD_KIND_TIMESTAMP.rawValue)
            field.value.u64 = seconds
        case .bytes(let data):
            let memory = allocate(max(data.count, 1))
            data.withUnsafeBytes { if let base = $0.baseAddress { memory.copyMemory(from: base, byteCount: $0.count) } }
            field.kind = UInt8(AMQP_FIELD_KIND_BYTES.rawValue)
            field.value.bytes = cesb_amqp_bytes(memory, data.count)
        case .void:
            field.kind = UInt8(AMQP_FIELD_KIND_VOID.rawValue)
        }
        return field
    }

    /// Tables and arrays nested deeper than this are not read (a hostile message could nest
    /// thousands of levels in one frame, and every walk of them recurses).
    static let maximumDepth = 32

    /// Reads a field table the broker sent (integers of every width become `.int`, decimals
    /// and floats `.double`); values nested deeper than ``maximumDepth`` become `.void`.
    static func decode(_ table: amqp_table_t) -> [String: HeaderValue] {
        var tooDeep = false
        return decode(table, depth: 0, tooDeep: &tooDeep)
    }

    /// ``decode(_:)``, saying whether anything was nested too deep to read.
    static func decode(_ table: amqp_table_t, tooDeep: inout Bool) -> [String: HeaderValue] {
        decode(table, depth: 0, tooDeep: &tooDeep)
    }

    private static func decode(_ table: amqp_table_t, depth: Int, tooDeep: inout Bool) -> [String: HeaderValue] {
        var result: [String: HeaderValue] = [:]
        for index in 0..<Int(table.num_entries) {
            let entry = table.entries[index]
            result[Connection.string(entry.key)] = decode(entry.value, depth: depth + 1, tooDeep: &tooDeep)
        }
        return result
    }

    private static func decode(_ field: amqp_field_value_t, depth: Int, tooDeep: inout Bool) -> HeaderValue {
        let kind = Int32(field.kind)
        if depth > maximumDepth, kind == Int32(AMQP_FIELD_KIND_TABLE.rawValue) || kind == Int32(AMQP_FIELD_KIND_ARRAY.rawValue) {
            tooDeep = true
            return .void
        }
        switch kind {
        case Int32(AMQP_FIELD_KIND_UTF8.rawValue):
            return .string(Connection.string(field.value.bytes))
        case Int32(AMQP_FIELD_KIND_BYTES.rawValue):
            let bytes = field.value.bytes
            return .bytes(bytes.len > 0 && bytes.bytes != nil ? Data(bytes: bytes.bytes, count: bytes.len) : Data())
        case Int32(AMQP_FIELD_KIND_BOOLEAN.rawValue): return .bool(field.value.boolean != 0)
        case Int32(AMQP_FIELD_KIND_I8.rawValue): return .int(Int64(field.value.i8))
        case Int32(AMQP_FIELD_KIND_U8.rawValue): return .int(Int64(field.value.u8))
        case Int32(AMQP_FIELD_KIND_I16.rawValue): return .int(Int64(field.value.i16))
        case Int32(AMQP_FIELD_KIND_U16.rawValue): return .int(Int64(field.value.u16))
        case Int32(AMQP_FIELD_KIND_I32.rawValue): return .int(Int64(field.value.i32))
        case Int32(AMQP_FIELD_KIND_U32.rawValue): return .int(Int64(field.value.u32))
        case Int32(AMQP_FIELD_KIND_I64.rawValue): return .int(field.value.i64)
        case Int32(AMQP_FIELD_KIND_U64.rawValue):
            return Int64(exactly: field.value.u64).map(HeaderValue.int) ?? .double(Double(field.value.u64))
        case Int32(AMQP_FIELD_KIND_TIMESTAMP.rawValue): return .timestamp(field.value.u64)
        case Int32(AMQP_FIELD_KIND_DECIMAL.rawValue):
            let decimal = field.value.decimal
            return .double(Double(Int32(bitPattern: decimal.value)) / pow(10, Double(decimal.decimals)))
        case Int32(AMQP_FIELD_KIND_VOID.rawValue): return .void
        case Int32(AMQP_FIELD_KIND_F32.rawValue): return .double(Double(field.value.f32))
        case Int32(AMQP_FIELD_KIND_F64.rawValue): return .double(field.value.f64)
        case Int32(AMQP_FIELD_KIND_TABLE.rawValue): return .table(decode(field.value.table, depth: depth, tooDeep: &tooDeep))
        case Int32(AMQP_FIELD_KIND_ARRAY.rawValue):
            let array = field.value.array
            var values: [HeaderValue] = []
            values.reserveCapacity(Int(array.num_entries))
            for index in 0..<Int(array.num_entries) { values.append(decode(array.entries[index], depth: depth + 1, tooDeep: &tooDeep)) }
            return .array(values)
        default: return .void
        }
    }
}
