/// A stored object read through its kind. A field the object lacks (stored before the field
/// existed) takes the default of the kind's field table, so every default lives in that
/// table alone and the parts built from objects state none of their own.
///
/// Objects are validated by the store before they are written: a required field is present
/// and of its type, so the empty fallbacks below never apply to a stored object.
public struct ObjectValues: Sendable {
    /// The kind whose field table gives the defaults.
    public let kind: ObjectKind
    /// The object as stored.
    public let fields: ObjectFields

    /// `fields`, read as an object of `kind`.
    public init(_ kind: ObjectKind, _ fields: ObjectFields) {
        self.kind = kind
        self.fields = fields
    }

    /// The field's value; the table's default when the object lacks it or holds null for a
    /// field whose default is not null (a string field accepts null on write).
    public subscript(_ field: String) -> FieldValue {
        if let value = fields[field], value != .null { return value }
        return kind.field(field)?.defaultValue ?? .null
    }

    /// The object's name.
    public var name: String { fields["name"]?.string ?? "" }
    /// A string field's value or default.
    public func string(_ field: String) -> String { self[field].string ?? "" }
    /// An integer field's value or default.
    public func int(_ field: String) -> Int { self[field].int ?? 0 }
    /// A boolean field's value or default.
    public func bool(_ field: String) -> Bool { self[field].bool ?? false }
}
