import Foundation

/// Redis, pooled by the server (`[kvdb]` in server.conf).
public struct KVDB: Sendable {
    let context: ServiceContext

    /// Runs one command, e.g. `["LRANGE", "orders", "0", "9"]`.
    /// - Throws: ``ServiceError`` `kvdb.unavailable`, `kvdb.timeout`, `kvdb.reply_error`,
    ///   `kvdb.unsupported_command` (MULTI, WATCH, SELECT, SUBSCRIBE… need one connection across calls).
    public func execute(_ command: [String]) async throws -> RedisValue {
        try await context.host.kvdbExecute(command, from: context)
    }

    /// Runs several commands in one round trip on one connection; replies in order.
    /// - Throws: as ``execute(_:)``; an error reply to any command throws `kvdb.reply_error`
    ///   naming it (the other commands have run).
    public func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        try await context.host.kvdbPipeline(commands, from: context)
    }
}

/// One Redis reply.
public enum RedisValue: Sendable, Equatable {
    case null
    case int(Int)
    case string(Data)
    case array([RedisValue])

    /// The reply as UTF-8 text, for string and integer replies.
    public var text: String? {
        switch self {
        case .string(let data): String(decoding: data, as: UTF8.self)
        case .int(let value): String(value)
        default: nil
        }
    }

    /// The reply as an integer, for integer replies and strings holding one.
    public var intValue: Int? {
        switch self {
        case .int(let value): value
        case .string(let data): Int(String(decoding: data, as: UTF8.self))
        default: nil
        }
    }
}
