/// What a consumer is doing.
public enum ConsumerStatus: String, Sendable {
    /// Opening its connection and consuming.
    case connecting
    /// Receiving deliveries.
    case consuming
    /// Backing off before the next attempt (see its last error).
    case waiting
    /// Stopping: cancelled, finishing the deliveries in flight.
    case draining
    case stopped
}

/// What the handler decided for a delivery.
public enum DeliveryOutcome: Sendable, Equatable {
    /// Handled: `basic.ack`.
    case ack
    /// Given up on: `basic.reject` without requeue (to the dead-letter exchange).
    case reject
    /// Not handled here: `basic.reject` with requeue (another consumer, or later).
    case requeue
}

/// What one consumer does, as a pure state machine: events in (connected, a delivery, a
/// settlement, a stop, the clock), actions out (dispatch, ack or reject, cancel, close,
/// back off). ``ConsumerWorker`` performs them; tests drive it with plain values.
///
/// The rules it keeps:
/// - a delivery is acked or rejected only when its handler settled it, on the connection
///   it came on: a settlement for an earlier connection is dropped (the broker redelivers
///   that message, as it must: its channel is gone);
/// - a stop cancels the consumer first, then waits for the deliveries in flight to be
///   settled and written, then closes; deliveries arriving after the cancel are not
///   handed out (closing the channel returns them to the queue); a hard deadline closes
///   anyway (what is unsettled stays unacked for the broker to redeliver);
/// - reconnects back off exponentially with a cap; the backoff resets only after a
///   connection that lasted (a queue deleted right after each consume does not spin).
struct ConsumerStateMachine {
    struct Configuration {
        var name: String
        var initialBackoff: UInt64
        var maximumBackoff: UInt64
        /// A connection up at least this long resets the backoff when it ends.
        var stableAfter: UInt64 = 10_000_000_000
    }

    typealias Status = ConsumerStatus
    typealias Outcome = DeliveryOutcome

    enum SettleResult: Equatable {
        /// Queued for the owner to write; wake it if it sleeps.
        case queued(wakeOwner: Bool)
        /// Its connection ended: the broker redelivers the message.
        case stale
    }

    enum TickAction: Equatable {
        case none
        /// Send `basic.cancel` (once): a stop began.
        case cancel
        /// Close the connection: drained, or the stop's deadline passed.
        case close
    }

    struct EndedAction: Equatable {
        /// Deliveries handed out and not settled on the ended connection: the broker
        /// redelivers them.
        var abandoned: Int
        /// Exit the thread (stopped) instead of reconnecting.
        var exit: Bool
        /// Reconnect after this time (monotonic nanoseconds).
        var backOffUntil: UInt64?
    }

    let configuration: Configuration
    private(set) var status: Status = .connecting
    /// The connection's number: settlements carry it.
    private(set) var generation: UInt64 = 0
    private var inFlight: Set<UInt64> = []
    private var settlements: [(tag: UInt64, outcome: Outcome)] = []
    private var stopping = false
    private var stopDeadline: UInt64?
    private var cancelled = false
    private var connectedAt: UInt64 = 0
    private var sleeping = false
    private var backoff: UInt64
    private(set) var lastError: String?
    private(set) var reconnects = 0
    /// Deliveries received and handed out, over every connection.
    private(set) var delivered = 0
    /// Deliveries left unsettled when their connection ended.
    private(set) var abandoned = 0
    /// Blocking-call deadline for the watchdog.
    private var blockedUntil: UInt64?

    init(_ configuration: Configuration) {
        self.configuration = configuration
        backoff = configuration.initialBackoff
    }

    /// Deliveries handed out and not yet written as settled.
    var inFlightCount: Int { inFlight.count + settlements.count }

    var isStopping: Bool { stopping }

    /// Before each connection attempt: false means exit (stopped).
    mutating func startConnecting() -> Bool {
        if stopping {
            status = .stopped
            return false
        }
        status = .connecting
        return true
    }

    /// The connection or the consume failed (or the consumer may not start yet: `reason`).
    /// Returns when to try again.
    mutating func connectFailed(_ reason: String, now: UInt64) -> UInt64? {
        lastError = reason
        reconnects += 1
        if stopping {
            status = .stopped
            return nil
        }
        status = .waiting
        return nextAttempt(now: now)
    }

    /// Consuming on a new connection; returns its generation.
    mutating func connected(now: UInt64) -> UInt64 {
        generation &+= 1
        connectedAt = now
        cancelled = false
        lastError = nil
        status = stopping ? .draining : .consuming
        return generation
    }

    /// A delivery arrived: whether to hand it to the handler (not while stopping).
    mutating func received(_ tag: UInt64) -> Bool {
        guard !stopping else { return false }
        inFlight.insert(tag)
        delivered += 1
        return true
    }

    /// The handler settled a delivery of connection `generation`.
    mutating func settle(generation: UInt64, tag: UInt64, outcome: Outcome) -> SettleResult {
        // Out of the in-flight set at once: a second settlement of the tag is stale (a double
        // ack would make the broker close the channel, and drop every delivery on it).
        guard generation == self.generation, inFlight.remove(tag) != nil else { return .stale }
        settlements.append((tag, outcome))
        return .queued(wakeOwner: sleeping)
    }

    /// The settlements to write now.
    mutating func takeSettlements() -> [(tag: UInt64, outcome: Outcome)] {
        guard !settlements.isEmpty else { return [] }
        let taken = settlements
        settlements.removeAll(keepingCapacity: true)
        return taken
    }

    /// Stop: cancel, let the deliveries in flight finish until `deadline` (nil: no limit),
    /// close, exit. A later call may only bring the deadline closer.
    mutating func stop(deadline: UInt64?) {
        stopping = true
        if let deadline { stopDeadline = min(stopDeadline ?? deadline, deadline) }
        if status == .consuming { status = .draining }
    }

    /// Once per loop turn, after writing and reading.
    mutating func tick(now: UInt64) -> TickAction {
        guard stopping else { return .none }
        if let stopDeadline, now >= stopDeadline { return .close }
        if !cancelled {
            cancelled = true
            return .cancel
        }
        return inFlight.isEmpty && settlements.isEmpty ? .close : .none
    }

    /// The connection ended: `error` nil after a clean close (stopping).
    mutating func connectionEnded(_ error: String?, now: UInt64) -> EndedAction {
        let left = inFlight.count + settlements.count
        abandoned += left
        inFlight.removeAll()
        settlements.removeAll()
        generation &+= 1  // settlements still to come for it are stale
        if let error { lastError = error }
        if error != nil { reconnects += 1 }
        if now &- connectedAt >= configuration.stableAfter { backoff = configuration.initialBackoff }
        guard !stopping else {
            status = .stopped
            return EndedAction(abandoned: left, exit: true, backOffUntil: nil)
        }
        status = .waiting
        return EndedAction(abandoned: left, exit: false, backOffUntil: nextAttempt(now: now))
    }

    /// How long the owner may sleep in `poll` (nil: stay awake, there is work).
    mutating func prepareToSleep(now: UInt64, bufferedInput: Bool, heartbeatSeconds: Int) -> Int? {
        guard settlements.isEmpty, !bufferedInput else { return nil }
        if stopping && (!cancelled || inFlight.isEmpty) { return nil }
        var milliseconds = heartbeatSeconds > 0 ? min(heartbeatSeconds * 250, 1000) : 1000
        if let stopDeadline {
            milliseconds = min(milliseconds, Int((stopDeadline &- min(stopDeadline, now)) / 1_000_000) + 1)
        }
        sleeping = true
        return milliseconds
    }

    mutating func awake() { sleeping = false }

    // MARK: The watchdog

    /// The owner enters a blocking call that should end by `now + limit`.
    mutating func willBlock(now: UInt64, limit: UInt64) { blockedUntil = now &+ limit }

    mutating func unblocked() { blockedUntil = nil }

    /// Whether the owner is stuck past its blocking call's limit.
    func isStalled(now: UInt64) -> Bool { blockedUntil.map { now > $0 } ?? false }

    private mutating func nextAttempt(now: UInt64) -> UInt64 {
        let until = now &+ backoff
        backoff = min(backoff &* 2, configuration.maximumBackoff)
        return until
    }
}
