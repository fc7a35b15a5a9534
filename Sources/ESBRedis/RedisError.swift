/// Why a Redis call failed.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure, extensible without breaking callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// No connection to Redis (down, refused, lost, AUTH or SELECT failed).
        public static let unavailable = Code(rawValue: "unavailable")
        /// No reply within the timeout; the connection was dropped.
        public static let timeout = Code(rawValue: "timeout")
        /// Redis answered with an error reply.
        public static let reply = Code(rawValue: "reply_error")
        /// The client was shut down.
        public static let closed = Code(rawValue: "closed")

        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
