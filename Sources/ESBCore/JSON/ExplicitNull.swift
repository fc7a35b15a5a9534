/// Encodes an absent optional as an explicit JSON `null` instead of leaving the key out,
/// as the API's documents promise (`"error": null`). Synthesized `Encodable` skips nil
/// optionals; wrapping the property makes it encode the wrapper, which writes the null.
@propertyWrapper
public struct ExplicitNull<Value: Encodable & Sendable & Equatable>: Encodable, Sendable, Equatable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}
