import ESBRedis
import ESBService
import Foundation

/// Replies decode straight into the SDK's value: a status or a nested error reply as its text.
extension RedisValue: RedisReplyDecodable {
    /// A status reply (`OK`, `PONG`) as its text.
    public static func status(_ text: String) -> RedisValue { .string(Data(text.utf8)) }
    /// An error reply inside an array (a top-level one throws `kvdb.reply_error`) as its text.
    public static func error(_ text: String) -> RedisValue { .string(Data(text.utf8)) }
}
