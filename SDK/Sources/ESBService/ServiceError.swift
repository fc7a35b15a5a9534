/// The error services see from everything the server does for them.
///
/// Its description is `"CODE: MESSAGE"`, e.g. `amqp.returned: 312 NO_ROUTE`.
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable, string-backed error code; new codes may be added without breaking callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible,
        ExpressibleByStringLiteral
    {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human message naming the object and the cause.
    public var message: String

    /// Creates an error with a code and a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Creates an error with a code and a message.
    public init(code: Code, message: String) {
        self.init(code, message)
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension ServiceError.Code {
    public static let invalidJSON: Self = "request.invalid_json"
    public static let invalidXML: Self = "request.invalid_xml"
    public static let notConfigured: Self = "esb.not_configured"
    public static let internalError: Self = "esb.internal"

    public static let invokeUnknownService: Self = "invoke.unknown_service"
    public static let invokeInactive: Self = "invoke.inactive"
    public static let invokeSelfInvocation: Self = "invoke.self_invocation"

    public static let amqpUnknownOutconn: Self = "amqp.unknown_outconn"
    public static let amqpInactive: Self = "amqp.inactive"
    public static let amqpReturned: Self = "amqp.returned"
    public static let amqpNacked: Self = "amqp.nacked"
    public static let amqpConfirmTimeout: Self = "amqp.confirm_timeout"
    public static let amqpConnectionFailed: Self = "amqp.connection_failed"
    public static let amqpChannelClosed: Self = "amqp.channel_closed"
    public static let amqpPoolTimeout: Self = "amqp.pool_timeout"

    public static let kvdbUnavailable: Self = "kvdb.unavailable"
    public static let kvdbTimeout: Self = "kvdb.timeout"
    public static let kvdbReplyError: Self = "kvdb.reply_error"
    public static let kvdbUnsupportedCommand: Self = "kvdb.unsupported_command"

    public static let httpUnknownOutconn: Self = "http.unknown_outconn"
    public static let httpInactive: Self = "http.inactive"
    public static let httpTimeout: Self = "http.timeout"
    public static let httpConnectionFailed: Self = "http.connection_failed"
    public static let httpStatus: Self = "http.status"
    /// A call the connection cannot make as asked (a path parameter missing).
    public static let httpInvalidRequest: Self = "http.invalid_request"

    public static let retryExhausted: Self = "retry.exhausted"

    /// An SDK call got an argument it cannot use (a page size of 0, a negative interval…);
    /// the message names the argument.
    public static let argumentInvalid: Self = "argument.invalid"
    /// The ODB cannot be reached.
    public static let odbUnavailable: Self = "odb.unavailable"
}

extension ServiceError {
    /// `argument.invalid` naming `argument` of `call`, its value and what is allowed.
    public static func invalidArgument(_ call: String, _ argument: String, _ value: Any, allowed: String) -> ServiceError {
        ServiceError(.argumentInvalid, "\(call): \(argument) must be \(allowed), not \(value)")
    }
}
