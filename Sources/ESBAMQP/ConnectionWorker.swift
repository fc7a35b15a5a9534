import ESBConcurrency
import Foundation
import Glibc
import Synchronization

/// One pooled connection and the thread that owns it: a thin I/O loop around a
/// ``PublisherStateMachine``, which decides; this connects, writes, reads, sleeps and
/// settles as it says.
///
/// Only the owner thread touches the librabbitmq handle. Other threads submit sends
/// through the machine (under its lock) and an eventfd, and the pool's watchdog may shut the
/// socket down when the owner is stuck in a blocking call. On plain TCP a service thread
/// whose send finds the owner asleep writes it to the socket itself (``SocketLane``),
/// sparing the owner's wake-up; the owner still reads and settles its confirm.
final class ConnectionWorker: Sendable {
    typealias Machine = PublisherStateMachine<PendingSend>

    let index: Int
    let wakeup: Wakeup
    private let configuration: PoolConfiguration
    private let room: WaitingRoom
    private let observer: (any PoolObserver)?
    private let machine: Mutex<Machine>
    private let socket = Atomic<Int32>(-1)
    private let exited = Atomic<Bool>(false)
    private let writes = Atomic<Int>(0)
    private let directWrites = Atomic<Int>(0)
    /// The current connection's socket while it accepts direct writes (plain TCP).
    private let lane = Mutex<SocketLane?>(nil)
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
        machine = Mutex(Machine(.init(
            name: configuration.name, window: configuration.window, confirm: configuration.confirm,
            confirmTimeout: UInt64(configuration.confirmTimeoutMilliseconds) * 1_000_000,
            initialBackoff: UInt64(configuration.initialBackoffSeconds * 1e9),
            maximumBackoff: UInt64(configuration.maximumBackoffSeconds * 1e9))))
    }

    /// Starts the owner thread.
    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "amqp:\(configuration.name):\(index)"
        thread.start()
    }

    /// Takes a send when connected with room in the window; false otherwise. A service
    /// thread finding the owner asleep writes it itself; otherwise it is queued.
    func submit(_ send: PendingSend) -> Bool {
        if ServiceThread.isCurrent, room.isEmpty, let lane = lane.withLock({ $0 }),
           lane.tryWithSocket({ writeDirectly(send, $0) }) == true {
            return true
        }
        switch machine.withLock({ $0.submit(send) }) {
        case .refused:
            return false
        case .queued(let wakeOwner):
            // A busy owner finds the queue on its next turn; only a sleeping one needs the
            // eventfd (a syscall and a wakeup per message otherwise).
            if wakeOwner { wakeup.signal() }
            return true
        }
    }

    /// Stops taking sends; the owner finishes what is in flight, closes and exits.
    func stop() {
        machine.withLock { $0.stop() }
        wakeup.signal()
    }

    var hasExited: Bool { exited.load(ordering: .acquiring) }

    /// `send(2)` calls that wrote publishes of ours (plain TCP).
    var socketWrites: Int { writes.load(ordering: .relaxed) }

    /// Sends written by the service thread that made them.
    var sendsWrittenDirectly: Int { directWrites.load(ordering: .relaxed) }

    var snapshot: ConnectionSnapshot {
        machine.withLock { ConnectionSnapshot(index: index, status: $0.status, inFlight: $0.inFlight,
                                              lastError: $0.lastError, reconnects: $0.reconnects) }
    }

    /// Called by the pool's watchdog: shuts the socket down under an owner stuck too long in
    /// a blocking call (a stalled broker), which makes that call fail.
    func checkStalled(now: UInt64) {
        // Under the machine's lock, which the owner holds to forget the descriptor before
        // the connection closes it: never a shutdown of a number reused since.
        machine.withLock { machine in
            guard machine.isStalled(now: now) else { return }
            let descriptor = socket.load(ordering: .acquiring)
            if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    // MARK: The owner thread

    private func run() {
        defer {
            exited.store(true, ordering: .releasing)
            onExit()
        }
        while true {
            switch machine.withLock({ $0.startConnecting() }) {
            case .exit(let change):
                report(change)
                return
            case .connect(let change):
                report(change)
            }
            let connection: Connection
            do {
                connection = try Connection(broker: configuration.broker, confirm: configuration.confirm, name: configuration.name,
                                            returnTagHeader: configuration.returnTagHeader)
                try blocking(limitMilliseconds: configuration.broker.connectTimeoutMilliseconds * 4) { () throws(AMQPError) in try connection.open() }
            } catch {
                perform(machine.withLock { $0.connectFailed(error, now: monotonicNanoseconds()) })
                continue
            }
            socket.store(connection.socketDescriptor, ordering: .releasing)
            report(machine.withLock { $0.connected() })
            let ended = withExtendedLifetime(connection) {
                let ended = serve(connection)
                if ended == nil { _ = try? blocking(limitMilliseconds: configuration.broker.connectTimeoutMilliseconds) { () throws(AMQPError) in connection.close() } }
                machine.withLock { _ in socket.store(-1, ordering: .releasing) }
                return ended
            }
            perform(machine.withLock { $0.connectionEnded(ended, now: monotonicNanoseconds()) })
        }
    }

    /// Settles, hands back and reports what an ended connection left, then backs off.
    private func perform(_ action: Machine.EndedAction) {
        action.settlements.forEach(settle)
        room.admit(action.unwritten)
        report(action.change)
        if let until = action.backOffUntil { pause(until: until) }
    }

    /// Writes, reads and sleeps until the connection ends: nil after a clean stop, or why.
    private func serve(_ connection: Connection) -> AMQPError? {
        let socketLane = connection.acceptsRawFrames
            ? SocketLane(descriptor: connection.socketDescriptor, frameMax: connection.frameMax, channel: connection.channel) : nil
        lane.withLock { $0 = socketLane }
        defer {
            // No direct write after this: the connection is about to close.
            lane.withLock { $0 = nil }
            socketLane?.withSocket { socketLane?.isOpen = false }
        }
        return serveLoop(connection, socketLane)
    }

    private func serveLoop(_ connection: Connection, _ socketLane: SocketLane?) -> AMQPError? {
        var frames = FrameEncoder(channel: connection.channel, frameMax: connection.frameMax)
        while true {
            // 1. Write what was submitted, and what waits in the pool when the window has room.
            var batch = machine.withLock { $0.takeQueued() }
            if !room.isEmpty {
                let waiting = room.take(machine.withLock { $0.windowRoom })
                machine.withLock { $0.adopted(waiting.count) }
                batch += waiting
            }
            if !batch.isEmpty, let failure = exclusive(socketLane, { write(batch, connection, &frames) }) { return failure }

            // 2. Read everything the broker sent (librabbitmq may write a heartbeat meanwhile).
            do throws(AMQPError) {
                try exclusive(socketLane) { () throws(AMQPError) in try read(connection, socketLane) }
            } catch {
                return error
            }
            connection.releaseBuffers()

            // 3. A missed confirm means a stalled broker or connection; a stop ends once drained.
            let now = monotonicNanoseconds()
            switch machine.withLock({ $0.tick(now: now) }) {
            case .end(let error): return error
            case .drained: return nil
            case .none: break
            }

            // 4. Sleep until the socket, a submit or the next deadline.
            let sleep = machine.withLock {
                $0.prepareToSleep(now: now, bufferedInput: connection.hasBufferedInput, poolWaiting: !room.isEmpty,
                                  heartbeatSeconds: configuration.broker.heartbeatSeconds)
            }
            if case .sleep(let milliseconds) = sleep {
                wakeup.wait(socket: connection.socketDescriptor, milliseconds: milliseconds)
                machine.withLock { $0.awake() }
            }
        }
    }

    /// Reads and acts on every frame the broker sent; throws why the connection ended.
    private func read(_ connection: Connection, _ socketLane: SocketLane?) throws(AMQPError) {
        while let incoming = try connection.nextFrame() {
            let action = machine.withLock { $0.received(incoming) }
            action.settlements.forEach(settle)
            report(action.change)
            if let end = action.end {
                connection.acknowledgeConnectionClose()
                throw end
            }
            if action.replaceChannel {
                try blocking(limitMilliseconds: configuration.broker.connectTimeoutMilliseconds) { () throws(AMQPError) in
                    try connection.replaceClosedChannel()
                }
                socketLane?.channel = connection.channel
            }
        }
    }

    /// Runs `body` holding the socket (when direct writes are possible).
    private func exclusive<T, Failure: Error>(_ lane: SocketLane?, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        guard let lane else { return try body() }
        return try lane.withSocket(body)
    }

    /// A service thread's own send, written while it holds the socket and the owner sleeps:
    /// tracked first (its delivery tag is the next), then written with one `send(2)`.
    /// Returns false when the machine says to queue it instead.
    private func writeDirectly(_ send: PendingSend, _ lane: SocketLane) -> Bool {
        guard lane.isOpen, let tag = machine.withLock({ $0.directTag() }) else { return false }
        var frames = FrameEncoder(channel: lane.channel, frameMax: lane.frameMax, capacity: 512 + send.message.body.count)
        do {
            try encode(send, tag: tag, into: &frames)
        } catch {
            // Never taken by the machine: it fails alone.
            if send.complete(.failure(error)) {
                observer?.settled(pool: configuration.name, outcome: .failed)
            }
            return true
        }
        let limit = UInt64(configuration.confirmTimeoutMilliseconds) * 1_000_000
        guard machine.withLock({ $0.submitDirect(send, tag: tag, now: monotonicNanoseconds(), limit: limit) }) else { return false }
        let outcome = frames.bytes.withUnsafeBytes { Connection.write($0, to: lane.descriptor) }
        writes.add(outcome.calls, ordering: .relaxed)
        if outcome.written == 0, outcome.error != nil {
            // Not a byte went out: queue it like any other send (the owner, finding the socket
            // shut, ends the connection and hands it to the pool's others).
            machine.withLock { $0.directUnwritten(send) }
            shutdown(lane.descriptor, Int32(SHUT_RDWR))
            return false
        }
        directWrites.add(1, ordering: .relaxed)
        observer?.published(pool: configuration.name)
        let failure = outcome.error.map {
            AMQPError(.connectionFailed, "outgoing connection '\(configuration.name)' (\(configuration.broker.address)): "
                      + "connection lost while writing: \(String(cString: strerror($0)))")
        }
        if let settlement = machine.withLock({ $0.directWritten(send, failure: failure) }) { settle(settlement) }
        // The owner notices a shut socket and ends the connection, failing what it tracks.
        if failure != nil { shutdown(lane.descriptor, Int32(SHUT_RDWR)) }
        return true
    }

    /// Writes a batch of publishes: on plain TCP encoded by ``FrameEncoder`` and written with
    /// one `send(2)` per ``Self/writeChunk`` bytes, on TLS through librabbitmq one by one.
    /// - Returns: why the connection ended, if writing failed.
    private func write(_ batch: [PendingSend], _ connection: Connection, _ frames: inout FrameEncoder) -> AMQPError? {
        var position = 0
        frames.channel = connection.channel
        while position < batch.count {
            // Encode up to a chunk; a send AMQP cannot frame fails alone.
            frames.removeAll()
            var encoded: [(send: PendingSend, start: Int)] = []
            var tag = machine.withLock { $0.nextTag }
            while position < batch.count && frames.bytes.count < Self.writeChunk {
                let send = batch[position]
                position += 1
                let start = frames.bytes.count
                do {
                    // On TLS too, as the check of what AMQP can frame (librabbitmq writes it).
                    try encode(send, tag: tag, into: &frames)
                } catch {
                    settle(machine.withLock { $0.refused(send, error) })
                    continue
                }
                encoded.append((send, start))
                tag += 1
                if !connection.acceptsRawFrames { break }
            }
            guard !encoded.isEmpty else { continue }

            // Write.
            let written: Int, failure: AMQPError?
            if connection.acceptsRawFrames {
                let outcome = blocking(limitMilliseconds: configuration.confirmTimeoutMilliseconds) { () throws(Never) in
                    frames.bytes.withUnsafeBytes { connection.write($0) }
                }
                writes.add(outcome.calls, ordering: .relaxed)
                (written, failure) = (outcome.written, outcome.failure)
            } else {
                do {
                    try blocking(limitMilliseconds: configuration.confirmTimeoutMilliseconds) { () throws(AMQPError) in
                        try connection.publish(encoded[0].send.message, tag: configuration.confirm ? tag - 1 : nil)
                    }
                    (written, failure) = (0, nil)
                } catch {
                    (written, failure) = (0, error)
                }
            }

            // Sends with a byte written are this connection's to settle; the rest go back.
            var complete: [PendingSend] = [], partlyWritten: PendingSend?, unwrittenFrom = encoded.count
            if connection.acceptsRawFrames {
                for (index, item) in encoded.enumerated() {
                    let end = index + 1 < encoded.count ? encoded[index + 1].start : frames.bytes.count
                    if end <= written {
                        complete.append(item.send)
                    } else if item.start < written {
                        partlyWritten = item.send
                    } else {
                        unwrittenFrom = index
                        break
                    }
                }
            } else if failure == nil {
                complete = [encoded[0].send]
            } else {
                partlyWritten = encoded[0].send  // librabbitmq may have written part of it
            }
            let settlements = machine.withLock {
                $0.published(complete, partlyWritten: partlyWritten, failure: failure, now: monotonicNanoseconds())
            }
            for _ in 0..<(complete.count + (partlyWritten == nil ? 0 : 1)) { observer?.published(pool: configuration.name) }
            settlements.forEach(settle)
            if let failure {
                let unwritten = encoded[unwrittenFrom...].map(\.send) + batch[position...]
                room.admit(machine.withLock { $0.unwritten(unwritten) })
                frames.removeAll()
                return failure
            }
        }
        frames.removeAll()
        return nil
    }

    /// Appends `send`'s frames, its delivery tag stamped into a mandatory message's return-tag
    /// header (confirms on).
    /// - Throws: `invalid_message` when AMQP cannot frame it (nothing was appended).
    private func encode(_ send: PendingSend, tag: UInt64, into frames: inout FrameEncoder) throws(AMQPError) {
        var properties = send.message.properties
        if configuration.confirm && send.message.mandatory { properties.headers[configuration.returnTagHeader] = .int(Int64(tag)) }
        do {
            try frames.publish(exchange: send.message.exchange, routingKey: send.message.routingKey,
                               mandatory: send.message.mandatory, properties: properties, body: send.message.body)
        } catch {
            throw AMQPError(.invalidMessage, "outgoing connection '\(configuration.name)': \(error.reason)")
        }
    }

    /// Bytes of frames written per `send(2)` at most (a batch of many large messages is
    /// written in several).
    static let writeChunk = 256 * 1024

    private func settle(_ settlement: Machine.Settlement) {
        if settlement.send.complete(settlement.result) { observer?.settled(pool: configuration.name, outcome: settlement.outcome) }
    }

    private func report(_ change: Machine.StatusChange?) {
        guard let change else { return }
        observer?.connectionChanged(pool: configuration.name, index: index, status: change.status, error: change.error)
    }

    /// Runs a blocking call under the watchdog.
    private func blocking<T, Failure: Error>(limitMilliseconds: Int, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        machine.withLock { $0.willBlock(now: monotonicNanoseconds(), limit: UInt64(limitMilliseconds) * 1_000_000) }
        defer { machine.withLock { $0.unblocked() } }
        return try body()
    }

    /// Waits until `until` with ±20 % jitter on what is left, or until stopped.
    private func pause(until: UInt64) {
        let now = monotonicNanoseconds()
        guard until > now else { return }
        let deadline = now + UInt64(Double(until - now) * Double.random(in: 0.8...1.2))
        while !machine.withLock({ $0.isStopping }) {
            let now = monotonicNanoseconds()
            guard now < deadline else { return }
            wakeup.wait(milliseconds: Int((deadline - now) / 1_000_000) + 1)
        }
    }
}
