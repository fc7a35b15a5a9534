import ESBConcurrency
import Foundation
import Glibc
import Synchronization

/// One consumer and the thread that owns its connection: a thin I/O loop around a
/// ``ConsumerStateMachine``, which decides; this connects, consumes, reads deliveries,
/// writes acks and rejects, sleeps and backs off as it says.
///
/// Only the owner thread touches the librabbitmq handle. Handlers settle deliveries from
/// any thread through the machine (under its lock) and an eventfd; the group's watchdog
/// may shut the socket down when the owner is stuck in a blocking call.
final class ConsumerWorker: Sendable {
    typealias Machine = ConsumerStateMachine

    let index: Int
    private let configuration: ConsumerConfiguration
    private let handler: any ConsumerHandler
    private let wakeup = Wakeup()
    private let machine: Mutex<Machine>
    private let socket = Atomic<Int32>(-1)
    private let exited = Atomic<Bool>(false)
    /// Set by a settlement that asks to check ``ConsumerHandler/reasonNotToConsume()`` again.
    private let recheck = Atomic<Bool>(false)
    /// Called on the owner thread as it exits (after ``hasExited`` turns true).
    private let onExit: @Sendable () -> Void

    init(index: Int, configuration: ConsumerConfiguration, handler: any ConsumerHandler,
         exited onExit: @escaping @Sendable () -> Void) {
        self.index = index
        self.configuration = configuration
        self.handler = handler
        self.onExit = onExit
        machine = Mutex(Machine(.init(
            name: configuration.name,
            initialBackoff: UInt64(configuration.initialBackoffSeconds * 1e9),
            maximumBackoff: UInt64(configuration.maximumBackoffSeconds * 1e9))))
    }

    var consumerTag: String { "\(configuration.consumerTagPrefix).\(index)" }

    /// Starts the owner thread.
    func start() {
        let thread = Thread { [self] in run() }
        // librabbitmq decodes nested header tables recursively in C before we can look.
        thread.stackSize = 16 << 20
        thread.name = "amqp-in:\(configuration.name):\(index)"
        thread.start()
    }

    /// Cancels the consumer; the owner lets the deliveries in flight be settled until
    /// `deadline` (monotonic nanoseconds; nil: no limit), closes and exits.
    func stop(deadline: UInt64?) {
        machine.withLock { $0.stop(deadline: deadline) }
        wakeup.signal()
    }

    var hasExited: Bool { exited.load(ordering: .acquiring) }

    var snapshot: ConsumerSnapshot {
        machine.withLock {
            ConsumerSnapshot(index: index, status: $0.status, inFlight: $0.inFlightCount, delivered: $0.delivered,
                             lastError: $0.lastError, reconnects: $0.reconnects)
        }
    }

    /// A handler's decision on a delivery of connection `generation`.
    func settle(generation: UInt64, tag: UInt64, outcome: DeliveryOutcome, recheck: Bool = false) -> Bool {
        if recheck { self.recheck.store(true, ordering: .releasing) }
        switch machine.withLock({ $0.settle(generation: generation, tag: tag, outcome: outcome) }) {
        case .stale:
            return false
        case .queued(let wakeOwner):
            if wakeOwner || recheck { wakeup.signal() }
            return true
        }
    }

    /// Called by the group's watchdog: shuts the socket down under an owner stuck too long
    /// in a blocking call (a stalled broker), which makes that call fail.
    func checkStalled(now: UInt64) {
        // Under the machine's lock, which the owner holds to forget the descriptor before the
        // connection closes it: never a shutdown of a number reused since.
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
        while machine.withLock({ $0.startConnecting() }) {
            report()
            if let reason = handler.reasonNotToConsume() {
                backOff(machine.withLock { $0.connectFailed(reason, now: monotonicNanoseconds()) })
                continue
            }
            let connection: Connection
            do {
                connection = try Connection(broker: configuration.broker, confirm: false, name: configuration.name,
                                            returnTagHeader: "", role: "AMQP channel", consumes: true)
                try blocking { () throws(AMQPError) in
                    try connection.open()
                    try connection.consume(queue: configuration.queue, prefetch: configuration.prefetch, consumerTag: consumerTag)
                }
            } catch {
                backOff(machine.withLock { $0.connectFailed(error.message, now: monotonicNanoseconds()) })
                continue
            }
            socket.store(connection.socketDescriptor, ordering: .releasing)
            let generation = machine.withLock { $0.connected(now: monotonicNanoseconds()) }
            report()
            let ended = withExtendedLifetime(connection) {
                let ended = serve(connection, generation: generation)
                if ended == nil { _ = try? blocking { () throws(AMQPError) in connection.close() } }
                machine.withLock { _ in socket.store(-1, ordering: .releasing) }
                return ended
            }
            let action = machine.withLock { $0.connectionEnded(ended?.message, now: monotonicNanoseconds()) }
            report()
            if let until = action.backOffUntil { pause(until: until) }
        }
        report()
    }

    private func backOff(_ until: UInt64?) {
        report()
        if let until { pause(until: until) }
    }

    /// Writes settlements, reads deliveries and sleeps until the connection ends: nil after
    /// a clean stop, or why it ended.
    private func serve(_ connection: Connection, generation: UInt64) -> AMQPError? {
        while true {
            // 1. Write what handlers settled.
            let settlements = machine.withLock { $0.takeSettlements() }
            for (tag, outcome) in settlements {
                do throws(AMQPError) {
                    try blocking { () throws(AMQPError) in try write(outcome, tag, connection) }
                } catch {
                    return error
                }
                handler.settled(channel: configuration.name, index: index, outcome: outcome)
            }
            if recheck.exchange(false, ordering: .acquiringAndReleasing), let reason = handler.reasonNotToConsume() {
                return connection.failure(reason)
            }

            // 2. Read everything the broker sent (librabbitmq may write a heartbeat meanwhile).
            do throws(AMQPError) {
                try read(connection, generation: generation)
            } catch {
                return error
            }
            connection.releaseBuffers()

            // 3. A stop cancels, waits for the deliveries in flight, then closes.
            let now = monotonicNanoseconds()
            switch machine.withLock({ $0.tick(now: now) }) {
            case .none:
                break
            case .cancel:
                do throws(AMQPError) {
                    try blocking { () throws(AMQPError) in try connection.cancel(consumerTag: consumerTag) }
                } catch {
                    return error
                }
                report()
            case .close:
                // What handlers settled meanwhile is written first: finished work is not redone.
                for (tag, outcome) in machine.withLock({ $0.takeSettlements() }) {
                    do throws(AMQPError) {
                        try blocking { () throws(AMQPError) in try write(outcome, tag, connection) }
                    } catch {
                        return error
                    }
                    handler.settled(channel: configuration.name, index: index, outcome: outcome)
                }
                return nil
            }

            // 4. Sleep until the socket, a settlement or the next deadline.
            let sleep = machine.withLock {
                $0.prepareToSleep(now: now, bufferedInput: connection.hasBufferedInput,
                                  heartbeatSeconds: configuration.broker.heartbeatSeconds)
            }
            if let milliseconds = sleep {
                wakeup.wait(socket: connection.socketDescriptor, milliseconds: milliseconds)
                machine.withLock { $0.awake() }
            }
        }
    }

    private func write(_ outcome: DeliveryOutcome, _ tag: UInt64, _ connection: Connection) throws(AMQPError) {
        switch outcome {
        case .ack: try connection.ack(tag)
        case .reject: try connection.reject(tag, requeue: false)
        case .requeue: try connection.reject(tag, requeue: true)
        }
    }

    /// Reads and acts on every frame the broker sent; throws why the connection ended.
    private func read(_ connection: Connection, generation: UInt64) throws(AMQPError) {
        // Under the watchdog one frame (and a delivery's content) at a time: a long pass over
        // many buffered deliveries is progress, not a stall.
        while let incoming = try blocking({ () throws(AMQPError) in try connection.nextFrame() }) {
            switch incoming {
            case .deliver(let message):
                // While stopping, a delivery that crossed the cancel stays unacked: closing
                // the channel returns it to the queue.
                guard machine.withLock({ $0.received(message.deliveryTag) }) else { continue }
                handler.handle(Delivery(deliveryTag: message.deliveryTag, redelivered: message.redelivered,
                                        exchange: message.exchange, routingKey: message.routingKey,
                                        properties: message.properties, body: message.body, malformed: message.malformed,
                                        worker: self, generation: generation))
            case .cancelled:
                throw connection.failure("the broker cancelled the consumer of queue '\(configuration.queue)' "
                                         + "(the queue was deleted, or its node went down)")
            case .channelClosed(let code, let text):
                throw connection.failure("the broker closed the channel: \(code) \(text)")
            case .connectionClosed(let code, let text):
                connection.acknowledgeConnectionClose()
                throw connection.failure("the broker closed the connection: \(code) \(text)")
            case .ack, .nack, .returned, .blocked, .unblocked, .other:
                continue
            }
        }
    }

    private func report() {
        let (status, error) = machine.withLock { ($0.status, $0.lastError) }
        handler.consumerChanged(channel: configuration.name, index: index, status: status,
                                error: status == .consuming ? nil : error)
    }

    /// Runs a blocking call under the watchdog (twice the connect timeout).
    private func blocking<T, Failure: Error>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        let limit = UInt64(max(configuration.broker.connectTimeoutMilliseconds, 1000)) * 2_000_000
        machine.withLock { $0.willBlock(now: monotonicNanoseconds(), limit: limit) }
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
