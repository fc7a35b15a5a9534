import Foundation

/// Redis, pooled by the server (`[kvdb]` in server.conf).
public struct KVDB: Sendable {
    let context: ServiceContext

    /// Runs one command, e.g. `["LRANGE", "orders", "0", "9"]`.
    /// - Throws: ``ServiceError`` `kvdb.unavailable`, `kvdb.timeout`, `kvdb.reply_error`,
    ///   `kvdb.unsupported_command` (MULTI, WATCH, SELECT, SUBSCRIBE… need one connection across calls).
    public nonisolated(nonsending) func execute(_ command: [String]) async throws -> RedisValue {
        try await context.host.kvdbExecute(command, from: context)
    }

    /// Runs several commands in one round trip on one connection; replies in order.
    /// - Throws: as ``execute(_:)``; an error reply to any command throws `kvdb.reply_error`
    ///   naming it (the other commands have run).
    public nonisolated(nonsending) func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        try await context.host.kvdbPipeline(commands, from: context)
    }
}

extension KVDB {
    /// GET: the value as text, nil when the key does not exist.
    public func get(_ key: String) async throws -> String? {
        try await execute(["GET", key]).text
    }

    /// SET, with an optional expiry.
    public func set(_ key: String, _ value: String, expireSeconds: Int? = nil) async throws {
        _ = try await execute(["SET", key, value] + (expireSeconds.map { ["EX", String($0)] } ?? []))
    }

    /// DEL: how many of the keys existed.
    @discardableResult
    public func delete(_ keys: String...) async throws -> Int {
        try await execute(["DEL"] + keys).intValue ?? 0
    }

    /// INCRBY: the new value.
    @discardableResult
    public func increment(_ key: String, by amount: Int = 1) async throws -> Int {
        try await execute(["INCRBY", key, String(amount)]).intValue ?? 0
    }

    /// RPUSH: the list's new length.
    @discardableResult
    public func append(_ key: String, _ values: [String]) async throws -> Int {
        try await execute(["RPUSH", key] + values).intValue ?? 0
    }

    /// LRANGE with Redis's inclusive, possibly negative, indexes.
    public func range(_ key: String, _ start: Int, _ stop: Int) async throws -> [String] {
        guard case .array(let values) = try await execute(["LRANGE", key, String(start), String(stop)]) else { return [] }
        return values.compactMap(\.text)
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
