/// A stored object read through its kind. A field the object lacks (stored before the field
/// existed) takes the default of the kind's field table, so every default lives in that
/// table alone and the parts built from objects state none of their own.
///
/// Objects are validated by the store before they are written: a required field is present
/// and of its type, so the empty fallbacks below never apply to a stored object.
public struct ObjectValues: Sendable {
    public let kind: ObjectKind
    public let fields: ObjectFields

    public init(_ kind: ObjectKind, _ fields: ObjectFields) {
        self.kind = kind
        self.fields = fields
    }

    /// The field's value, or the table's default.
    public subscript(_ field: String) -> FieldValue {
        fields[field] ?? kind.field(field)?.defaultValue ?? .null
    }

    public var name: String { fields["name"]?.string ?? "" }
    public func string(_ field: String) -> String { self[field].string ?? "" }
    public func int(_ field: String) -> Int { self[field].int ?? 0 }
    public func bool(_ field: String) -> Bool { self[field].bool ?? false }
}
