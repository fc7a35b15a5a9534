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
