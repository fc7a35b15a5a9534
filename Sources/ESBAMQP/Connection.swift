import CESBRabbitMQ
import Foundation

/// One librabbitmq connection with one channel: a C handle used from exactly one thread
/// (its ``ConnectionWorker``'s or ``ConsumerWorker``'s), freed in `deinit`. Every call here
/// may block.
final class Connection {
    /// What arrived from the broker.
    enum Incoming {
        case ack(tag: UInt64, multiple: Bool)
        case nack(tag: UInt64, multiple: Bool)
        /// A mandatory message came back; `tag` is what its return-tag header carried.
        case returned(tag: UInt64?, code: Int, text: String)
        case channelClosed(code: Int, text: String)
        case connectionClosed(code: Int, text: String)
        case blocked(reason: String)
        case unblocked
        /// A message for a consumer (Basic.Deliver with its content).
        case deliver(IncomingDelivery)
        /// The broker cancelled a consumer (its queue was deleted, its node went down).
        case cancelled(consumerTag: String)
        case other
    }

    let state: amqp_connection_state_t
    private(set) var channel: amqp_channel_t = 1
    private let broker: BrokerConfiguration
    private let confirm: Bool
    /// How messages name what the connection serves: `outgoing connection 'crm'`.
    private let label: String
    /// The header stamping a mandatory message with its delivery tag, to match returns.
    private let returnTagHeader: String
    /// A consumer's: announce `consumer_cancel_notify` at login.
    private let consumes: Bool

    /// A fresh, unconnected handle; ``open()`` connects it. `role` names the object in
    /// messages (`outgoing connection`, `AMQP channel`).
    init(broker: BrokerConfiguration, confirm: Bool, name: String, returnTagHeader: String,
         role: String = "outgoing connection", consumes: Bool = false) throws(AMQPError) {
        let label = "\(role) '\(name)'"
        guard let state = amqp_new_connection() else {
            throw AMQPError(.connectionFailed, "\(label): cannot allocate a librabbitmq connection")
        }
        self.state = state
        self.broker = broker
        self.confirm = confirm
        self.label = label
        self.returnTagHeader = returnTagHeader
        self.consumes = consumes
    }

    deinit { amqp_destroy_connection(state) }

    /// The socket, once open: the watchdog shuts it down to unblock a stalled owner thread.
    var socketDescriptor: Int32 { amqp_get_sockfd(state) }

    /// The negotiated frame_max.
    var frameMax: Int { Int(amqp_get_frame_max(state)) }

    /// Whether frames may be written to the socket directly (``write(_:)``): plain TCP. A TLS
    /// connection's bytes go through librabbitmq's own writes.
    var acceptsRawFrames: Bool { !broker.tls }

    /// Writes encoded frames to the socket with `send(2)`, waiting in `poll(2)` while it is
    /// full (the watchdog shuts it down under a stalled broker). Plain TCP only, by the
    /// holder of the worker's socket lock, so frames never interleave with librabbitmq's.
    /// - Returns: how many bytes were written, why writing stopped before the end, and how
    ///   many `send(2)` calls it took.
    func write(_ bytes: UnsafeRawBufferPointer) -> (written: Int, failure: AMQPError?, calls: Int) {
        let outcome = Self.write(bytes, to: amqp_get_sockfd(state))
        return (outcome.written, outcome.error.map { failure("connection lost while writing: \(String(cString: strerror($0)))") }, outcome.calls)
    }

    /// ``write(_:)`` on a descriptor: bytes written, the `errno` that stopped it, `send(2)` calls.
    static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32) -> (written: Int, error: Int32?, calls: Int) {
        var written = 0, calls = 0
        while written < bytes.count {
            calls += 1
            let count = Glibc.send(descriptor, bytes.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL))
            if count > 0 {
                written += count
                continue
            }
            let code = count < 0 ? errno : EPIPE
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK {
                var descriptorSet = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                if poll(&descriptorSet, 1, 1000) >= 0 || errno == EINTR { continue }
            }
            return (written, code, calls)
        }
        return (written, nil, calls)
    }

    /// Whether librabbitmq holds bytes or frames not yet handed out (poll would not see them).
    var hasBufferedInput: Bool { amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 }

    /// TCP (or TLS) connect, AMQP login, channel 1, `confirm.select`.
    func open() throws(AMQPError) {
        let socket: OpaquePointer?
        if broker.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw failure("cannot create a TLS socket") }
            // librabbitmq's SSL socket loads no CAs of its own: without a path, the system bundle.
            let bundle = broker.tlsCAPath ?? Self.systemCABundle
            if broker.tlsVerify || broker.tlsCAPath != nil {
                let status = amqp_ssl_socket_set_cacert(socket, bundle)
                guard status == AMQP_STATUS_OK.rawValue else { throw failure("cannot load CA bundle \(bundle): \(Self.describe(status))") }
            }
            amqp_ssl_socket_set_verify_peer(socket, broker.tlsVerify ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, broker.tlsVerify ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else { throw failure("cannot create a socket") }
        var timeout = Self.timeval(milliseconds: broker.connectTimeoutMilliseconds)
        let opened = amqp_socket_open_noblock(socket, broker.host, Int32(broker.port), &timeout)
        guard opened == AMQP_STATUS_OK.rawValue else { throw failure("cannot connect to \(broker.address): \(Self.describe(opened))") }
        _ = amqp_set_handshake_timeout(state, &timeout)
        _ = amqp_set_rpc_timeout(state, &timeout)
        if consumes {
            // The broker tells a consumer that announces it when its queue goes away.
            let arena = CArena()
            var properties = arena.table(["capabilities": .table(["consumer_cancel_notify": .bool(true)])])
            try check(cesb_amqp_login_plain_with_properties(state, broker.virtualHost, 0, Int32(broker.frameMax),
                                                            Int32(broker.heartbeatSeconds), &properties,
                                                            broker.username, broker.password), "login to \(broker.address)")
        } else {
            try check(cesb_amqp_login_plain(state, broker.virtualHost, 0, Int32(broker.frameMax), Int32(broker.heartbeatSeconds),
                                            broker.username, broker.password), "login to \(broker.address)")
        }
        try openChannel()
    }

    /// Opens the next channel number (a closed channel's number is not reused) in confirm mode.
    func openChannel() throws(AMQPError) {
        _ = amqp_channel_open(state, channel)
        try check(amqp_get_rpc_reply(state), "channel.open")
        if confirm {
            _ = amqp_confirm_select(state, channel)
            try check(amqp_get_rpc_reply(state), "confirm.select")
        }
    }

    /// Answers a broker's channel.close and opens a fresh channel.
    func replaceClosedChannel() throws(AMQPError) {
        var closeOk = amqp_channel_close_ok_t(dummy: 0)
        let status = amqp_send_method(state, channel, CESB_CHANNEL_CLOSE_OK, &closeOk)
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("channel.close-ok: \(Self.describe(status))") }
        channel = channel == 65535 ? 1 : channel + 1
        try openChannel()
    }

    /// Answers a broker's connection.close; the connection is then unusable.
    func acknowledgeConnectionClose() {
        var closeOk = amqp_connection_close_ok_t(dummy: 0)
        _ = amqp_send_method(state, 0, CESB_CONNECTION_CLOSE_OK, &closeOk)
    }

    /// Closes channel and connection politely (bounded by the RPC timeout).
    func close() {
        _ = amqp_channel_close(state, channel, AMQP_REPLY_SUCCESS)
        _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
    }

    /// Writes one message; `tag` (when mandatory) goes into ``returnTagHeader``.
    func publish(_ message: OutgoingMessage, tag: UInt64?) throws(AMQPError) {
        let arena = CArena()
        var properties = message.properties
        if let tag, message.mandatory { properties.headers[returnTagHeader] = .int(Int64(tag)) }
        var encoded = arena.properties(properties)
        let status = message.body.withUnsafeBytes { body in
            amqp_basic_publish(state, channel, arena.bytes(message.exchange), arena.bytes(message.routingKey),
                               message.mandatory ? 1 : 0, 0, &encoded, cesb_amqp_bytes(body.baseAddress, body.count))
        }
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("publish: \(Self.describe(status))") }
    }

    /// The next frame without waiting, or nil when none is ready. Heartbeats are sent and
    /// checked inside this call, so the owner calls it at least every heartbeat / 2.
    func nextFrame() throws(AMQPError) -> Incoming? {
        var frame = amqp_frame_t()
        var zero = Self.timeval(milliseconds: 0)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &zero)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        guard status == AMQP_STATUS_OK.rawValue else { throw failure("connection lost: \(Self.describe(status))") }
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return .other }
        let method = frame.payload.method
        switch method.id {
        case CESB_BASIC_ACK:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .ack(tag: ack.delivery_tag, multiple: ack.multiple != 0)
        case CESB_BASIC_NACK:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .nack(tag: nack.delivery_tag, multiple: nack.multiple != 0)
        case CESB_BASIC_RETURN:
            let returned = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let code = Int(returned.reply_code), text = Self.string(returned.reply_text)
            return .returned(tag: try readReturnedTag(), code: code, text: text)
        case CESB_CHANNEL_CLOSE:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            return .channelClosed(code: Int(close.reply_code), text: Self.string(close.reply_text))
        case CESB_CONNECTION_CLOSE:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            return .connectionClosed(code: Int(close.reply_code), text: Self.string(close.reply_text))
        case CESB_CONNECTION_BLOCKED:
            let blocked = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: Self.string(blocked.reason))
        case CESB_CONNECTION_UNBLOCKED:
            return .unblocked
        case CESB_BASIC_DELIVER:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            return .deliver(try readDelivery(deliver))
        case CESB_BASIC_CANCEL:
            let cancel = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .cancelled(consumerTag: Self.string(cancel.consumer_tag))
        default:
            return .other
        }
    }

    /// Frees librabbitmq's per-channel decode memory once nothing refers to it.
    func releaseBuffers() { amqp_maybe_release_buffers(state) }

    /// The returned message's header and body frames follow the Basic.Return at once.
    private func readReturnedTag() throws(AMQPError) -> UInt64? {
        var message = amqp_message_t()
        let reply = amqp_read_message(state, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            try check(reply, "reading a returned message")
            return nil
        }
        defer { amqp_destroy_message(&message) }
        let properties = message.properties
        guard properties._flags & amqp_flags_t(AMQP_BASIC_HEADERS_FLAG) != 0 else { return nil }
        guard case .int(let tag)? = CArena.decode(properties.headers)[returnTagHeader] else { return nil }
        return UInt64(exactly: tag)
    }

    // MARK: Errors

    func failure(_ what: String) -> AMQPError {
        AMQPError(.connectionFailed, "\(label) (\(broker.address)): \(what)")
    }

    func check(_ reply: amqp_rpc_reply_t, _ what: String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw failure("\(what): \(Self.describe(reply.library_error))")
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == CESB_CONNECTION_CLOSE {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                acknowledgeConnectionClose()
                throw failure("\(what): the broker closed the connection: \(close.reply_code) \(Self.string(close.reply_text))")
            }
            if reply.reply.id == CESB_CHANNEL_CLOSE {
                let close = reply.reply.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                throw failure("\(what): the broker closed the channel: \(close.reply_code) \(Self.string(close.reply_text))")
            }
            throw failure("\(what): unexpected broker method \(reply.reply.id)")
        default:
            throw failure("\(what): no reply")
        }
    }

    static func describe(_ status: Int32) -> String { String(cString: amqp_error_string2(status)) }

    static func string(_ bytes: amqp_bytes_t) -> String {
        guard let pointer = bytes.bytes, bytes.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: bytes.len), as: UTF8.self)
    }

    static func timeval(milliseconds: Int) -> Glibc.timeval {
        Glibc.timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
    }

    /// Debian's bundle of the system CAs.
    static let systemCABundle = "/etc/ssl/certs/ca-certificates.crt"
}
