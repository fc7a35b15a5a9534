import Foundation

/// A type replies decode into straight from hiredis's reply tree, with no intermediate
/// ``RedisReply`` (the SDK's `RedisValue`, for services).
public protocol RedisReplyDecodable: Sendable {
    /// A nil reply (a missing key).
    static var null: Self { get }
    /// An integer reply.
    static func int(_ value: Int) -> Self
    /// A bulk string, binary-safe.
    static func string(_ value: Data) -> Self
    /// A status reply such as `OK`.
    static func status(_ text: String) -> Self
    /// An error reply: in its place in a pipeline or an array (the first top-level one is
    /// also named by ``RedisReplies/firstError``).
    static func error(_ text: String) -> Self
    /// A multi-bulk reply, its elements decoded the same way.
    static func array(_ values: [Self]) -> Self
}

/// The replies of one pipeline, in order, and the first error reply among them.
public struct RedisReplies<Value: RedisReplyDecodable>: Sendable {
    /// One per command, in order; error replies in place.
    public var values: [Value]
    /// The index of the first command answered with an error reply, and its text.
    public var firstError: (command: Int, text: String)?
}
