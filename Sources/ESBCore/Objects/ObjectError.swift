/// A configuration object could not be created, changed or deleted.
public struct ObjectError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalid, duplicate, inUse = "in_use", notFound = "not_found"
    }
    public var code: Code
    public var message: String
    /// The field at fault, when there is one.
    public var field: String?

    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { message }
}
