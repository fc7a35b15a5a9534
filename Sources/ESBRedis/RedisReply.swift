import Foundation

/// One reply, as RESP2 has them.
public enum RedisReply: Sendable, Equatable, RedisReplyDecodable {
    case null
    case int(Int)
    case string(Data)
    /// A status reply such as `OK`.
    case status(String)
    /// An error reply such as `WRONGTYPE …`; a pipeline keeps it in place.
    case error(String)
    case array([RedisReply])
}

/// A type replies decode into straight from hiredis's reply tree, with no intermediate
/// ``RedisReply`` (the SDK's `RedisValue`, for services).
public protocol RedisReplyDecodable: Sendable {
    static var null: Self { get }
    static func int(_ value: Int) -> Self
    static func string(_ value: Data) -> Self
    /// A status reply such as `OK`.
    static func status(_ text: String) -> Self
    /// An error reply: in its place in a pipeline or an array (the first top-level one is
    /// also named by ``RedisReplies/firstError``).
    static func error(_ text: String) -> Self
    static func array(_ values: [Self]) -> Self
}

/// The replies of one pipeline, in order, and the first error reply among them.
public struct RedisReplies<Value: RedisReplyDecodable>: Sendable {
    public var values: [Value]
    /// The index of the first command answered with an error reply, and its text.
    public var firstError: (command: Int, text: String)?
}
