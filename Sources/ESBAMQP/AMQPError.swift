/// Why a publish or a connection failed; the message names the outconn and the cause.
public struct AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure, extensible without breaking callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A mandatory message the broker could not route (Basic.Return).
        public static let returned = Code(rawValue: "returned")
        /// The broker refused the message (Basic.Nack).
        public static let nacked = Code(rawValue: "nacked")
        /// No confirm within the confirm timeout; the connection was discarded.
        public static let confirmTimeout = Code(rawValue: "confirm_timeout")
        /// The connection failed or was lost before the message was confirmed.
        public static let connectionFailed = Code(rawValue: "connection_failed")
        /// The broker closed the channel (e.g. a missing exchange).
        public static let channelClosed = Code(rawValue: "channel_closed")
        /// No pooled connection could take the message within the acquire timeout.
        public static let poolTimeout = Code(rawValue: "pool_timeout")
        /// The message cannot be framed (a name over 255 bytes, headers larger than a frame);
        /// nothing of it was written.
        public static let invalidMessage = Code(rawValue: "invalid_message")
        /// The pool was shut down.
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
