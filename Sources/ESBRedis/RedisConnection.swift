import CESBHiredis
import Foundation

/// One hiredis context: a C handle used from exactly one thread (its pool worker's), freed
/// in `deinit`. Every call blocks, bounded by the configured timeout.
final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>
    private let configuration: RedisConfiguration

    /// Connects, authenticates and selects the database.
    init(_ configuration: RedisConfiguration) throws(RedisError) {
        self.configuration = configuration
        let timeout = timeval(tv_sec: configuration.timeoutMilliseconds / 1000,
                              tv_usec: (configuration.timeoutMilliseconds % 1000) * 1000)
        let made = if let path = configuration.unixSocketPath {
            redisConnectUnixWithTimeout(path, timeout)
        } else {
            redisConnectWithTimeout(configuration.host, Int32(configuration.port), timeout)
        }
        guard let made else { throw RedisError(.unavailable, "kvdb \(configuration.address): cannot allocate a hiredis context") }
        context = made
        guard made.pointee.err == 0 else {
            throw RedisError(.unavailable, "kvdb \(configuration.address): cannot connect: \(Self.errorText(made))")
        }
        _ = redisSetTimeout(made, timeout)
        // TCP keepalive notices a peer that vanished; a unix socket has none (and hiredis
        // would mark the context failed for trying).
        if configuration.unixSocketPath == nil { _ = redisEnableKeepAlive(made) }
        var setup: [[String]] = []
        if let password = configuration.password { setup.append(["AUTH", password]) }
        if configuration.database != 0 { setup.append(["SELECT", String(configuration.database)]) }
        guard !setup.isEmpty else { return }
        for (command, reply) in zip(setup, try pipeline(setup)) {
            if case .error(let text) = reply {
                throw RedisError(.unavailable, "kvdb \(configuration.address): \(command[0]) failed: \(text)")
            }
        }
    }

    deinit { redisFree(context) }

    /// Whether the connection can still be used (hiredis marks it failed after an I/O error).
    var isUsable: Bool { context.pointee.err == 0 }

    /// Sends every command, then reads every reply: one round trip. An error reply stays in
    /// its place; an I/O failure or timeout throws and leaves the connection unusable.
    func pipeline(_ commands: [[String]]) throws(RedisError) -> [RedisReply] {
        for command in commands {
            let status = Self.withArgv(command) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            guard status == REDIS_OK else { throw failure() }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw failure() }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(Self.convert(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    private func failure() -> RedisError {
        let text = Self.errorText(context)
        // hiredis reports a read timeout as an I/O error with EAGAIN's text.
        if context.pointee.err == REDIS_ERR_IO && (text.contains("temporarily unavailable") || text.contains("timed out")) {
            return RedisError(.timeout, "kvdb \(configuration.address): no reply within \(configuration.timeoutMilliseconds) ms")
        }
        return RedisError(.unavailable, "kvdb \(configuration.address): connection lost: \(text)")
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_INTEGER: return .int(Int(value.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_STRING: return .string(value.str.map { Data(bytes: $0, count: value.len) } ?? Data())
        case REDIS_REPLY_STATUS: return .status(value.str.map { String(decoding: Data(bytes: $0, count: value.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR: return .error(value.str.map { String(decoding: Data(bytes: $0, count: value.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ARRAY:
            return .array((0..<value.elements).compactMap { index in value.element[index].map(convert) })
        default: return .null
        }
    }

    /// Calls `body` with C argv and lengths for `command` (binary-safe).
    private static func withArgv<T>(_ command: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T) -> T {
        let arguments = command.map { Array($0.utf8) }
        let storage = arguments.map { bytes -> UnsafeMutablePointer<CChar> in
            let memory = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            bytes.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(memory), byteCount: bytes.count) }
            return memory.assumingMemoryBound(to: CChar.self)
        }
        defer { storage.forEach { $0.deallocate() } }
        var argv = storage.map { UnsafePointer<CChar>?($0) }
        let lengths = arguments.map(\.count)
        return argv.withUnsafeMutableBufferPointer { argvBuffer in
            lengths.withUnsafeBufferPointer { body(Int32(command.count), argvBuffer.baseAddress!, $0.baseAddress!) }
        }
    }
}
