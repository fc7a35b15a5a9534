import CESBHiredis
import Foundation

/// One hiredis context: a C handle used by one thread at a time (the pool lends it for one
/// call), freed in `deinit`. Every call blocks, bounded by the configured timeout.
///
/// `@unchecked Sendable`: it moves between threads only through the pool's lock, which
/// lends it to one borrower at a time.
final class RedisConnection: @unchecked Sendable {
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
        let replies = try pipeline(setup, as: RedisReply.self)
        if let (index, text) = replies.firstError {
            throw RedisError(.unavailable, "kvdb \(configuration.address): \(setup[index][0]) failed: \(text)")
        }
    }

    deinit { redisFree(context) }

    /// Whether the connection can still be used (hiredis marks it failed after an I/O error).
    var isUsable: Bool { context.pointee.err == 0 }

    /// Whether an idle connection still looks open: nothing may arrive on it unasked, so a
    /// readable socket means the server closed it (or broke the protocol). One `poll(2)`,
    /// no waiting.
    var looksAlive: Bool {
        guard isUsable else { return false }
        var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    /// Sends every command, then reads every reply: one round trip (one command: hiredis's
    /// `redisCommandArgv`). Replies decode straight into `Value`; an error reply stays in
    /// its place and the first is named. An I/O failure or timeout throws and leaves the
    /// connection unusable.
    func pipeline<Value: RedisReplyDecodable>(_ commands: [[String]], as type: Value.Type) throws(RedisError) -> RedisReplies<Value> {
        if commands.count == 1 {
            let (value, error) = try command(commands[0], as: type)
            return RedisReplies(values: [value], firstError: error.map { (0, $0) })
        }
        for command in commands {
            let status = Self.withArgv(command) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            guard status == REDIS_OK else { throw failure() }
        }
        var replies = RedisReplies<Value>(values: [], firstError: nil)
        replies.values.reserveCapacity(commands.count)
        for index in commands.indices {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let raw else { throw failure() }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            if replies.firstError == nil, reply.pointee.type == REDIS_REPLY_ERROR { replies.firstError = (index, Self.text(reply)) }
            replies.values.append(Self.decode(reply, as: type))
            freeReplyObject(raw)
        }
        return replies
    }

    /// One command, one round trip (hiredis's `redisCommandArgv`): the reply, and the text
    /// of an error reply.
    func command<Value: RedisReplyDecodable>(_ command: [String], as type: Value.Type) throws(RedisError) -> (value: Value, error: String?) {
        let raw = Self.withArgv(command) { argc, argv, lengths in redisCommandArgv(context, argc, argv, lengths) }
        guard let raw else { throw failure() }
        defer { freeReplyObject(raw) }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        return (Self.decode(reply, as: type), reply.pointee.type == REDIS_REPLY_ERROR ? Self.text(reply) : nil)
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

    private static func text(_ reply: UnsafeMutablePointer<redisReply>) -> String {
        guard let start = reply.pointee.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: start, count: reply.pointee.len), as: UTF8.self)
    }

    private static func decode<Value: RedisReplyDecodable>(_ reply: UnsafeMutablePointer<redisReply>, as type: Value.Type) -> Value {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_INTEGER: return .int(Int(value.integer))
        case REDIS_REPLY_STRING: return .string(value.str.map { Data(bytes: $0, count: value.len) } ?? Data())
        case REDIS_REPLY_STATUS: return .status(text(reply))
        case REDIS_REPLY_ERROR: return .error(text(reply))
        case REDIS_REPLY_ARRAY:
            var elements: [Value] = []
            elements.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                if let element = value.element[index] { elements.append(decode(element, as: type)) }
            }
            return .array(elements)
        default: return .null
        }
    }

    /// Calls `body` with C argv and lengths for `command` (binary-safe): the arguments'
    /// bytes in one buffer, on the stack when small.
    private static func withArgv<T>(_ command: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T) -> T {
        var total = 0
        for argument in command { total += argument.utf8.count }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { bytes in
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: command.count) { argv in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: command.count) { lengths in
                    var offset = 0
                    for (index, argument) in command.enumerated() {
                        let start = bytes.baseAddress! + offset
                        let target = UnsafeMutableRawBufferPointer(start: start, count: total - offset)
                        let written = target.initializeMemory(as: UInt8.self, fromContentsOf: argument.utf8).count
                        argv[index] = UnsafePointer(start)
                        lengths[index] = written
                        offset += written
                    }
                    return body(Int32(command.count), argv.baseAddress!, UnsafePointer(lengths.baseAddress!))
                }
            }
        }
    }
}
