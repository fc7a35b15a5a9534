import Foundation

/// A JSON scalar as stored in a configuration object.
public enum FieldValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case string(String)
    case int(Int)
    case bool(Bool)
    case null

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else { throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a string, integer, boolean or null") }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .null: try container.encodeNil()
        }
    }

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var int: Int? { if case .int(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }

    public var description: String {
        switch self {
        case .string(let value): "'\(value)'"
        case .int(let value): String(value)
        case .bool(let value): String(value)
        case .null: "null"
        }
    }
}

/// One named configuration object (a channel, a security definition, a connection…).
public typealias ObjectFields = [String: FieldValue]

/// The schema of a kind of configuration object, named as enmasse names it (`channel_plain_http`).
public struct ObjectKind: Sendable {
    /// A field's type and rules.
    public struct Field: Sendable {
        public enum FieldType: Sendable { case string, int, bool }
        public var name: String
        public var type: FieldType
        /// Used when a create leaves the field out; `nil` makes the field required, `.null`
        /// makes it optional (null is then accepted whatever the type).
        public var defaultValue: FieldValue?
        /// Extra check; returns the reason a value is refused, or nil.
        public var check: (@Sendable (FieldValue) -> String?)?
        /// The kind whose object this field names; `none` and null mean no reference.
        public var references: String?
        /// The only values a string field takes (forms offer them as a choice).
        public var allowed: [String]?
        /// Rewrites a given value before it is checked (Zato's files write `repeats: ''` for
        /// none, numbers as strings).
        public var coerce: (@Sendable (FieldValue) -> FieldValue)?

        /// `allowed`, when given, is also the field's check.
        public init(_ name: String, _ type: FieldType, default defaultValue: FieldValue? = nil,
                    references: String? = nil, allowed: [String]? = nil, check: (@Sendable (FieldValue) -> String?)? = nil,
                    coerce: (@Sendable (FieldValue) -> FieldValue)? = nil) {
            self.name = name
            self.coerce = coerce
            self.type = type
            self.defaultValue = defaultValue
            self.references = references
            self.allowed = allowed
            self.check = check ?? allowed.map { Self.oneOf($0) }
        }
    }

    /// The enmasse key and table discriminator, e.g. `def_sec`.
    public var name: String
    /// How messages name one object, e.g. `basic-auth definition`.
    public var label: String
    /// Fields other than `name`, in display order.
    public var fields: [Field]
    /// The write-only secret (stored encrypted, never returned), if the kind has one.
    public var secretField: String?
    /// Checks the fields together once each passed its own checks; returns the field at
    /// fault and why, or nil.
    public var validate: (@Sendable (ObjectFields) -> (field: String, reason: String)?)?

    public init(name: String, label: String, fields: [Field], secretField: String? = nil,
                validate: (@Sendable (ObjectFields) -> (field: String, reason: String)?)? = nil) {
        self.name = name
        self.label = label
        self.fields = fields
        self.secretField = secretField
        self.validate = validate
    }

    public func field(_ name: String) -> Field? { fields.first { $0.name == name } }
}

extension ObjectKind.Field {
    /// A check that the value is one of `allowed`.
    public static func oneOf(_ allowed: [String]) -> @Sendable (FieldValue) -> String? {
        { value in
            guard let text = value.string, allowed.contains(text) else { return "must be one of \(allowed.joined(separator: "|"))" }
            return nil
        }
    }

    /// A check that an integer lies in `range` (null passes: optional fields).
    public static func range(_ range: ClosedRange<Int>) -> @Sendable (FieldValue) -> String? {
        { value in
            if value == .null { return nil }
            guard let number = value.int, range.contains(number) else { return "must be an integer in \(range.lowerBound)...\(range.upperBound)" }
            return nil
        }
    }

    /// Empty text is null, whole numbers written as text are integers (other values as given).
    public static let lenientInt: @Sendable (FieldValue) -> FieldValue = { value in
        guard let text = value.string?.trimmingCharacters(in: .whitespaces) else { return value }
        if text.isEmpty { return .null }
        return Int(text).map { .int($0) } ?? value
    }

    /// Null is empty text; numbers and booleans are their text.
    public static let lenientText: @Sendable (FieldValue) -> FieldValue = { value in
        switch value {
        case .null: .string("")
        case .int(let number): .string(String(number))
        case .bool(let flag): .string(flag ? "true" : "false")
        case .string: value
        }
    }

    /// A check that a string is not empty.
    public static let nonEmpty: @Sendable (FieldValue) -> String? = { value in
        value.string?.isEmpty == false ? nil : "must not be empty"
    }
}
