import Foundation
import Glibc
import Synchronization

/// One pooled connection and the thread that owns it: connects (with backoff), publishes
/// what is submitted, reads acks, nacks, returns and closes, and keeps heartbeats going.
///
/// Only the owner thread touches the librabbitmq handle. Other threads submit sends
/// through a locked queue and an eventfd, and a watchdog may shut the socket down when
/// the owner is stuck in a blocking write.
final class ConnectionWorker: Sendable {
    private struct Shared {
        var status = ConnectionStatus.connecting
        var queue: [PendingSend] = []
        var inFlight = 0
        var stopping = false
        var lastError: String?
        var reconnects = 0
        /// The owner is (about to be) asleep in poll: the next submit must wake it.
        var sleeping = false
    }

    let index: Int
    let wakeup: Wakeup
    private let configuration: PoolConfiguration
    private let room: WaitingRoom
    private let observer: (any PoolObserver)?
    private let shared = Mutex(Shared())
    /// Monotonic ns when the owner entered a blocking call, 0 when not in one.
    private let blockedSince = Atomic<UInt64>(0)
    private let blockedLimit = Atomic<UInt64>(0)
    private let socket = Atomic<Int32>(-1)
    private let exited = Atomic<Bool>(false)
    private let writes = Atomic<Int>(0)
    /// Called on the owner thread as it exits (after ``hasExited`` turns true).
    private let onExit: @Sendable () -> Void

    init(index: Int, configuration: PoolConfiguration, wakeup: Wakeup, room: WaitingRoom, observer: (any PoolObserver)?,
         exited onExit: @escaping @Sendable () -> Void) {
        self.index = index
        self.configuration = configuration
        self.wakeup = wakeup
        self.room = room
        self.observer = observer
        self.onExit = onExit
    }

    /// Starts the owner thread.
    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "amqp:\(configuration.name):\(index)"
        thread.start()
    }

    /// Queues a send when connected with room in the window; false otherwise.
    func submit(_ send: PendingSend) -> Bool {
        let (accepted, wake) = shared.withLock { state -> (Bool, Bool) in
            guard state.status == .connected, !state.stopping, state.inFlight < configuration.window else { return (false, false) }
            state.queue.append(send)
            state.inFlight += 1
            defer { state.sleeping = false }
            return (true, state.sleeping)
        }
        // A busy owner finds the queue on its next turn; only a sleeping one needs the eventfd
        // (a syscall and a wakeup per message otherwise).
        if accepted && wake { wakeup.signal() }
        return accepted
    }

    /// Stops taking sends; the owner finishes what is in flight, closes and exits.
    func stop() {
        shared.withLock { $0.stopping = true }
        wakeup.signal()
    }

    var hasExited: Bool { exited.load(ordering: .acquiring) }

    /// `send(2)` calls that wrote publishes of ours (plain TCP).
    var socketWrites: Int { writes.load(ordering: .relaxed) }

    var snapshot: ConnectionSnapshot {
        shared.withLock { ConnectionSnapshot(index: index, status: $0.status, inFlight: $0.inFlight,
                                             lastError: $0.lastError, reconnects: $0.reconnects) }
    }

    /// Called by the pool's watchdog: shuts the socket down under an owner stuck too long in
    /// a blocking call (a stalled broker), which makes that call fail.
    func checkStalled(now: UInt64) {
        let since = blockedSince.load(ordering: .acquiring)
        guard since != 0, now > since, now - since > blockedLimit.load(ordering: .relaxed) else { return }
        let descriptor = socket.load(ordering: .acquiring)
        if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
    }

    // MARK: The owner thread

    private var isStopping: Bool { shared.withLock { $0.stopping } }

    private func run() {
        defer {
            exited.store(true, ordering: .releasing)
            onExit()
        }
        var delay = configuration.initialBackoffSeconds
        while !isStopping {
            setStatus(.connecting, error: nil)
            let connection: Connection
            do {
                connection = try Connection(broker: configuration.broker, confirm: configuration.confirm, name: configuration.name,
                                            returnTagHeader: configuration.returnTagHeader)
                try blocking(limitMilliseconds: configuration.broker.connectTimeoutMilliseconds * 4) { () throws(AMQPError) in try connection.open() }
            } catch {
                setStatus(.backingOff, error: error.message)
                pause(seconds: delay)
                delay = min(delay * 2, configuration.maximumBackoffSeconds)
                continue
            }
            delay = configuration.initialBackoffSeconds
            socket.store(connection.socketDescriptor, ordering: .releasing)
            setStatus(.connected, error: nil)
            let ended = serve(connection)
            if ended == nil { _ = try? blocking(limitMilliseconds: configuration.broker.connectTimeoutMilliseconds) { () throws(AMQPError) in connection.close() } }
            socket.store(-1, ordering: .releasing)
            guard let ended else { break }
            shared.withLock { $0.reconnects += 1 }
            setStatus(.backingOff, error: ended.message)
            pause(seconds: delay)
            delay = min(delay * 2, configuration.maximumBackoffSeconds)
        }
        setStatus(.closed, error: nil)
    }

    /// Publishes, reads and waits until the connection ends: nil after a clean stop, or why.
    /// Everything in flight is settled before it returns.
    private func serve(_ connection: Connection) -> AMQPError? {
        var tracker = ConfirmTracker<PendingSend>()
        let ended = serveLoop(connection, &tracker)
        let failure = ended ?? AMQPError(.closed, "outgoing connection '\(configuration.name)': closed")
        for send in tracker.reset() { settle(send, .failure(failure)) }
        // Queued but never written: safe to hand to another connection.
        let unsent = shared.withLock { state -> [PendingSend] in
            defer { state.queue.removeAll() }
            return state.queue
        }
        released(unsent.count)
        room.admit(unsent)
        return ended
    }

    private func serveLoop(_ connection: Connection, _ tracker: inout ConfirmTracker<PendingSend>) -> AMQPError? {
        let confirmNanoseconds = UInt64(configuration.confirmTimeoutMilliseconds) * 1_000_000
        var frames = FrameEncoder(channel: connection.channel, frameMax: connection.frameMax)
        while true {
            // 1. Write what was submitted, and what waits in the pool when the window has room.
            var batch = shared.withLock { state -> [PendingSend] in
                defer { state.queue.removeAll(keepingCapacity: true) }
                return state.queue
            }
            if !room.isEmpty {
                // A stopping connection takes nothing more: waiting sends go to the successor pool.
                let room = shared.withLock { $0.stopping ? 0 : max(0, configuration.window - $0.inFlight) }
                let waiting = self.room.take(room)
                shared.withLock { $0.inFlight += waiting.count }
                batch += waiting
            }
            if connection.acceptsRawFrames {
                if let failure = write(batch, connection, &tracker, &frames) { return failure }
                batch.removeAll()
            }
            for (position, send) in batch.enumerated() {
                let tag: UInt64? = configuration.confirm ? tracker.nextTag : nil
                do {
                    try blocking(limitMilliseconds: configuration.confirmTimeoutMilliseconds) { () throws(AMQPError) in
                        try connection.publish(send.message, tag: tag)
                    }
                } catch {
                    // The frame may have reached the broker: fail it, never republish it.
                    settle(send, .failure(error))
                    let unwritten = batch[(position + 1)...]
                    released(unwritten.count)
                    room.admit(unwritten)
                    return error
                }
                observer?.published(pool: configuration.name)
                if configuration.confirm {
                    _ = tracker.published(send, deadline: monotonicNanoseconds() + confirmNanoseconds)
                } else {
                    settle(send, .success(()), outcome: .written)
                }
            }

            // 2. Read everything the broker sent.
            do {
                while let incoming = try connection.nextFrame() {
                    if let ended = try handle(incoming, connection, &tracker) { return ended }
                }
            } catch {
                return error
            }
            connection.releaseBuffers()

            // 3. A missed confirm means a stalled broker or connection: discard it.
            let now = monotonicNanoseconds()
            if let deadline = tracker.earliestDeadline, deadline <= now {
                return AMQPError(.confirmTimeout, "outgoing connection '\(configuration.name)': no confirm from the broker within "
                                 + "\(configuration.confirmTimeoutMilliseconds) ms; the connection was discarded")
            }
            let (stopping, queued) = shared.withLock { ($0.stopping, !$0.queue.isEmpty) }
            if stopping && !queued && tracker.count == 0 { return nil }

            // 4. Sleep until the socket, a submit or the next deadline. Heartbeats are serviced
            // only inside librabbitmq calls, so wake at least four times per heartbeat.
            if !queued && !connection.hasBufferedInput && (room.isEmpty || windowIsFull) {
                var milliseconds = configuration.broker.heartbeatSeconds > 0 ? configuration.broker.heartbeatSeconds * 250 : 1000
                milliseconds = min(milliseconds, 1000)
                if let deadline = tracker.earliestDeadline {
                    milliseconds = min(milliseconds, Int((deadline - now) / 1_000_000) + 1)
                }
                // Announce the sleep under the lock and look once more: a submit after this signals.
                let sleeping = shared.withLock { state -> Bool in
                    state.sleeping = state.queue.isEmpty
                    return state.sleeping
                }
                if sleeping {
                    wakeup.wait(socket: connection.socketDescriptor, milliseconds: milliseconds)
                    shared.withLock { $0.sleeping = false }
                }
            }
        }
    }

    /// Plain TCP: encodes the batch's publishes and writes them with one `send(2)` per
    /// ``Self/writeChunk`` bytes. A send none of whose bytes were written when writing failed
    /// goes back to the pool; one partly or wholly written is never written again.
    /// - Returns: why the connection ended, if writing failed.
    private func write(_ batch: [PendingSend], _ connection: Connection, _ tracker: inout ConfirmTracker<PendingSend>,
                       _ frames: inout FrameEncoder) -> AMQPError? {
        let confirmNanoseconds = UInt64(configuration.confirmTimeoutMilliseconds) * 1_000_000
        frames.channel = connection.channel
        var position = 0
        while position < batch.count {
            frames.removeAll()
            var encoded: [(send: PendingSend, start: Int)] = []
            var tag = tracker.nextTag
            while position < batch.count && frames.bytes.count < Self.writeChunk {
                let send = batch[position]
                position += 1
                var properties = send.message.properties
                if configuration.confirm && send.message.mandatory { properties.headers[configuration.returnTagHeader] = .int(Int64(tag)) }
                let start = frames.bytes.count
                do {
                    try frames.publish(exchange: send.message.exchange, routingKey: send.message.routingKey,
                                       mandatory: send.message.mandatory, properties: properties, body: send.message.body)
                } catch {
                    settle(send, .failure(AMQPError(.invalidMessage, "outgoing connection '\(configuration.name)': \(error.reason)")))
                    continue
                }
                encoded.append((send, start))
                tag += 1
            }
            let (written, failure, calls) = blocking(limitMilliseconds: configuration.confirmTimeoutMilliseconds) { () throws(Never) in
                frames.bytes.withUnsafeBytes { connection.write($0) }
            }
            writes.add(calls, ordering: .relaxed)
            let deadline = monotonicNanoseconds() + confirmNanoseconds
            for (index, (send, start)) in encoded.enumerated() {
                guard start < written else {
                    // Not a byte of it left: safe for another connection, with the rest.
                    let unwritten = encoded[index...].map(\.send) + batch[position...]
                    released(unwritten.count)
                    room.admit(unwritten)
                    break
                }
                observer?.published(pool: configuration.name)
                let end = index + 1 < encoded.count ? encoded[index + 1].start : frames.bytes.count
                if configuration.confirm {
                    // Failed with the connection's error if writing failed (tracked sends are).
                    _ = tracker.published(send, deadline: deadline)
                } else if end <= written {
                    settle(send, .success(()), outcome: .written)
                } else {
                    settle(send, .failure(failure!))
                }
            }
            if let failure { return failure }
        }
        return nil
    }

    /// Bytes of frames written per `send(2)` at most (a batch of many large messages is
    /// written in several).
    static let writeChunk = 256 * 1024

    private var windowIsFull: Bool { shared.withLock { $0.inFlight >= configuration.window } }

    /// Acts on one incoming frame; returns why the connection ended, if it did.
    private func handle(_ incoming: Connection.Incoming, _ connection: Connection,
                        _ tracker: inout ConfirmTracker<PendingSend>) throws(AMQPError) -> AMQPError? {
        let name = configuration.name
        switch incoming {
        case .ack(let tag, let multiple):
            for (send, outcome) in tracker.acked(tag: tag, multiple: multiple) { settle(send, outcome) }
        case .nack(let tag, let multiple):
            for (send, outcome) in tracker.nacked(tag: tag, multiple: multiple) { settle(send, outcome) }
        case .returned(let tag, let code, let text):
            if let tag { tracker.returned(tag: tag, code: code, text: text) }
        case .channelClosed(let code, let text):
            let error = AMQPError(.channelClosed, "outgoing connection '\(name)': the broker closed the channel: \(code) \(text)")
            for send in tracker.reset() { settle(send, .failure(error)) }
            try connection.replaceClosedChannel()
        case .connectionClosed(let code, let text):
            connection.acknowledgeConnectionClose()
            return AMQPError(.connectionFailed, "outgoing connection '\(name)': the broker closed the connection: \(code) \(text)")
        case .blocked(let reason):
            setStatus(.connected, error: "the broker blocked publishing: \(reason)")
        case .unblocked, .other:
            break
        }
        return nil
    }

    private func settle(_ send: PendingSend, _ outcome: ConfirmTracker<PendingSend>.Outcome) {
        let name = configuration.name
        switch outcome {
        case .confirmed:
            settle(send, .success(()), outcome: .confirmed)
        case .returned(let code, let text):
            settle(send, .failure(AMQPError(.returned, "outgoing connection '\(name)': the broker returned the message: \(code) \(text)")),
                   outcome: .returned)
        case .nacked:
            settle(send, .failure(AMQPError(.nacked, "outgoing connection '\(name)': the broker nacked the message")), outcome: .nacked)
        }
    }

    private func settle(_ send: PendingSend, _ result: Result<Void, AMQPError>, outcome: SendOutcome? = nil) {
        released(1)
        let outcome = outcome ?? {
            if case .failure(let error) = result, error.code == .confirmTimeout { return .confirmTimeout }
            return .failed
        }()
        if send.complete(result) { observer?.settled(pool: configuration.name, outcome: outcome) }
    }

    private func released(_ count: Int) {
        guard count > 0 else { return }
        shared.withLock { $0.inFlight -= count }
    }

    private func setStatus(_ status: ConnectionStatus, error: String?) {
        let changed = shared.withLock { state -> Bool in
            let changed = state.status != status || (error != nil && state.lastError != error)
            state.status = status
            if let error { state.lastError = error }
            return changed
        }
        if changed { observer?.connectionChanged(pool: configuration.name, index: index, status: status, error: error) }
    }

    /// Runs a blocking librabbitmq call under the watchdog.
    private func blocking<T, Failure: Error>(limitMilliseconds: Int, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        blockedLimit.store(UInt64(limitMilliseconds) * 1_000_000, ordering: .relaxed)
        blockedSince.store(monotonicNanoseconds(), ordering: .releasing)
        defer { blockedSince.store(0, ordering: .releasing) }
        return try body()
    }

    /// Waits `seconds` with ±20 % jitter, or until stopped.
    private func pause(seconds: Double) {
        let jittered = seconds * Double.random(in: 0.8...1.2)
        let deadline = monotonicNanoseconds() + UInt64(jittered * 1e9)
        while !isStopping {
            let now = monotonicNanoseconds()
            guard now < deadline else { return }
            wakeup.wait(milliseconds: Int((deadline - now) / 1_000_000) + 1)
        }
    }
}
