/// One pooled publishing connection's decisions, without I/O, threads or clocks: events go
/// in, actions come out (in the shape of postgres-nio's `ConnectionStateMachine`).
/// ``ConnectionWorker`` keeps it under a lock, feeds it what happened (a submit, a write, a
/// frame, the time) and does what it answers (write, settle, replace the channel, back off).
///
/// It holds the rules that make a send impossible to lose or to duplicate:
/// - the window: sends queued or written and not yet confirmed never exceed `window`;
/// - never republish: a send any byte of which was written is settled by this connection
///   (confirmed, returned, nacked, or failed with the connection's error), never handed on;
///   only sends not yet written go back to the pool;
/// - every send it accepted is settled or handed back exactly once, and once the connection
///   is not connected it accepts none (status and queue change under one lock);
/// - confirms: tracked by delivery tag (``ConfirmTracker``), returns matched by the tag
///   stamped in a header, a confirm missing past its deadline ends the connection;
/// - stalls: a blocking call past its limit has its socket shut by the pool's watchdog;
/// - reconnects: exponential backoff with a cap, reset by a successful connect; a stop
///   drains what is in flight first.
struct PublisherStateMachine<Send> {
    struct Configuration {
        var name: String
        var window: Int
        var confirm: Bool
        var confirmTimeout: UInt64
        var initialBackoff: UInt64
        var maximumBackoff: UInt64
    }

    /// A send finished: complete it with `result`, count it as `outcome`.
    struct Settlement {
        var send: Send
        var result: Result<Void, AMQPError>
        var outcome: SendOutcome
    }

    /// A status the observer should hear of.
    struct StatusChange: Equatable {
        var status: ConnectionStatus
        var error: String?
    }

    enum SubmitAction {
        /// Queued; wake the owner if it sleeps.
        case queued(wakeOwner: Bool)
        /// Not connected, stopping or the window is full: try another connection.
        case refused
    }

    enum ConnectAction {
        /// Open a connection.
        case connect(StatusChange?)
        /// Stopped: leave.
        case exit(StatusChange?)
    }

    /// What to do after a connection ended or could not be opened.
    struct EndedAction {
        /// Sends written on the ended connection: failed with its error.
        var settlements: [Settlement]
        /// Sends accepted and never written: for the pool's other connections.
        var unwritten: [Send]
        var change: StatusChange?
        /// Wait until then before the next connect (monotonic ns); nil: stopped, exit.
        var backOffUntil: UInt64?
    }

    /// What a frame from the broker asks for.
    struct IncomingAction {
        var settlements: [Settlement] = []
        /// The broker closed the channel: answer and open the next one.
        var replaceChannel = false
        /// The connection is over.
        var end: AMQPError?
        var change: StatusChange?
    }

    enum TickAction: Equatable {
        case none
        /// A confirm is overdue: discard the connection.
        case end(AMQPError)
        /// Stopping and nothing is left in flight: close cleanly.
        case drained
    }

    enum SleepAction: Equatable {
        /// Sleep in `poll` (socket, wakeup) at most this long.
        case sleep(milliseconds: Int)
        /// Work is waiting: go round again.
        case stayAwake
    }

    let configuration: Configuration
    private(set) var status = ConnectionStatus.connecting
    private(set) var lastError: String?
    private(set) var reconnects = 0
    /// Sends queued or written and not settled (the window's occupancy).
    private(set) var inFlight = 0
    private var queue: [Send] = []
    private var tracker = ConfirmTracker<Send>()
    private var stopping = false
    private var sleeping = false
    private var backoff: UInt64
    private var blocked: (since: UInt64, limit: UInt64)?

    init(_ configuration: Configuration) {
        self.configuration = configuration
        backoff = configuration.initialBackoff
    }

    var isStopping: Bool { stopping }
    /// Sends written and awaiting a confirm.
    var awaitingConfirm: Int { tracker.count }
    /// The delivery tag the next published send gets (stamped into mandatory messages).
    var nextTag: UInt64 { tracker.nextTag }
    /// Room in the window for sends waiting in the pool; none while stopping.
    var windowRoom: Int { stopping || status != .connected ? 0 : max(0, configuration.window - inFlight) }

    // MARK: Any thread

    /// A send for this connection.
    mutating func submit(_ send: Send) -> SubmitAction {
        guard status == .connected, !stopping, inFlight < configuration.window else { return .refused }
        queue.append(send)
        inFlight += 1
        defer { sleeping = false }
        return .queued(wakeOwner: sleeping)
    }

    /// Whether a service thread holding the socket may write a send itself (its owner
    /// asleep in `poll`, nothing queued before it, room in the window), and the delivery tag
    /// it would get, to stamp into a mandatory message. nil: submit it instead.
    func directTag() -> UInt64? {
        guard status == .connected, !stopping, sleeping, queue.isEmpty, inFlight < configuration.window else { return nil }
        return tracker.nextTag
    }

    /// A send a service thread writes itself under the socket (after ``directTag()`` gave
    /// `tag`): tracked now, as written. False when things changed since: submit it instead.
    /// - Parameter limit: how long the write may block before the watchdog shuts the socket.
    mutating func submitDirect(_ send: Send, tag: UInt64, now: UInt64, limit: UInt64) -> Bool {
        guard directTag() == tag else { return false }
        inFlight += 1
        blocked = (now, limit)
        if configuration.confirm { _ = tracker.published(send, deadline: now &+ configuration.confirmTimeout) }
        return true
    }

    /// The direct write of `send` failed before its first byte: it was never written, and
    /// leaves the tracker (the writer still holds the socket: no publish came after it).
    mutating func directUnwritten(_ send: Send) {
        blocked = nil
        inFlight -= 1
        if configuration.confirm { tracker.withdrawLast() }
    }

    /// The direct write of `send` ended. `failure`: it may be partly written; the writer
    /// shuts the socket so that the owner ends the connection (which fails it when tracked).
    mutating func directWritten(_ send: Send, failure: AMQPError?) -> Settlement? {
        blocked = nil
        guard !configuration.confirm else { return nil }
        return failure.map { settle(send, .failure($0), .failed) } ?? settle(send, .success(()), .written)
    }

    /// Stop taking sends; what is in flight drains, then the connection closes.
    mutating func stop() {
        stopping = true
    }

    /// The watchdog: whether the owner has been in one blocking call past its limit (shut
    /// the socket down to make the call fail).
    func isStalled(now: UInt64) -> Bool {
        guard let blocked, now > blocked.since else { return false }
        return now - blocked.since > blocked.limit
    }

    // MARK: The owner: connecting

    /// Before each connect attempt.
    mutating func startConnecting() -> ConnectAction {
        if stopping { return .exit(change(to: .closed, error: nil)) }
        return .connect(change(to: .connecting, error: nil))
    }

    /// The connection is open, with its channel in confirm mode.
    mutating func connected() -> StatusChange? {
        backoff = configuration.initialBackoff
        tracker = ConfirmTracker()
        return change(to: .connected, error: nil)
    }

    /// A connect attempt failed.
    mutating func connectFailed(_ error: AMQPError, now: UInt64) -> EndedAction {
        ended(error, now: now)
    }

    // MARK: The owner: serving

    /// Everything submitted since the last call, oldest first, to write now.
    mutating func takeQueued() -> [Send] {
        defer { queue.removeAll(keepingCapacity: true) }
        return queue
    }

    /// Sends taken from the pool's waiting room (at most ``windowRoom``), to write now.
    mutating func adopted(_ count: Int) {
        inFlight += count
    }

    /// A send that cannot be framed: nothing of it was written.
    mutating func refused(_ send: Send, _ error: AMQPError) -> Settlement {
        settle(send, .failure(error), .failed)
    }

    /// Sends written (at least their first byte) in this order, tags from ``nextTag`` on.
    /// With confirms off, each wholly written one is done; `partlyWritten` is the last one
    /// when writing stopped inside it.
    mutating func published(_ sends: [Send], partlyWritten: Send? = nil, failure: AMQPError? = nil, now: UInt64) -> [Settlement] {
        guard configuration.confirm else {
            var settlements = sends.map { settle($0, .success(()), .written) }
            if let partlyWritten, let failure { settlements.append(settle(partlyWritten, .failure(failure), .failed)) }
            return settlements
        }
        let deadline = now &+ configuration.confirmTimeout
        for send in sends { _ = tracker.published(send, deadline: deadline) }
        if let partlyWritten { _ = tracker.published(partlyWritten, deadline: deadline) }
        return []
    }

    /// Sends accepted but not a byte of which was written: they leave this connection (for
    /// the pool's others).
    mutating func unwritten(_ sends: [Send]) -> [Send] {
        inFlight -= sends.count
        return sends
    }

    /// A frame from the broker.
    mutating func received(_ incoming: Connection.Incoming) -> IncomingAction {
        var action = IncomingAction()
        let name = configuration.name
        switch incoming {
        case .ack(let tag, let multiple):
            for settled in tracker.acked(tag: tag, multiple: multiple) { action.settlements.append(settle(settled)) }
        case .nack(let tag, let multiple):
            for settled in tracker.nacked(tag: tag, multiple: multiple) { action.settlements.append(settle(settled)) }
        case .returned(let tag, let code, let text):
            if let tag { tracker.returned(tag: tag, code: code, text: text) }
        case .channelClosed(let code, let text):
            let error = AMQPError(.channelClosed, "outgoing connection '\(name)': the broker closed the channel: \(code) \(text)")
            action.settlements = tracker.reset().map { settle($0, .failure(error), .failed) }
            action.replaceChannel = true
        case .connectionClosed(let code, let text):
            action.end = AMQPError(.connectionFailed, "outgoing connection '\(name)': the broker closed the connection: \(code) \(text)")
        case .blocked(let reason):
            action.change = change(to: .connected, error: "the broker blocked publishing: \(reason)")
        case .unblocked, .other, .deliver, .cancelled:
            break
        }
        return action
    }

    /// After each round of writing and reading.
    mutating func tick(now: UInt64) -> TickAction {
        if let deadline = tracker.earliestDeadline, deadline <= now {
            return .end(AMQPError(.confirmTimeout, "outgoing connection '\(configuration.name)': no confirm from the broker within "
                                  + "\(configuration.confirmTimeout / 1_000_000) ms; the connection was discarded"))
        }
        if stopping && queue.isEmpty && tracker.count == 0 { return .drained }
        return .none
    }

    /// Whether to sleep, and how long: until the socket, a submit, the next confirm
    /// deadline, and at least four times per heartbeat (librabbitmq services heartbeats
    /// only inside its calls). A submit after this wakes the owner.
    mutating func prepareToSleep(now: UInt64, bufferedInput: Bool, poolWaiting: Bool, heartbeatSeconds: Int) -> SleepAction {
        guard queue.isEmpty, !bufferedInput, !poolWaiting || windowRoom == 0 else { return .stayAwake }
        var milliseconds = heartbeatSeconds > 0 ? min(heartbeatSeconds * 250, 1000) : 1000
        if let deadline = tracker.earliestDeadline {
            milliseconds = min(milliseconds, Int((deadline &- min(deadline, now)) / 1_000_000) + 1)
        }
        sleeping = true
        return .sleep(milliseconds: milliseconds)
    }

    /// Back from `poll`.
    mutating func awake() {
        sleeping = false
    }

    /// The connection ended (nil: a clean close after a stop). Sends written on it fail
    /// with its error; sends not written leave for the pool; and, in the same step, it
    /// accepts no more sends.
    mutating func connectionEnded(_ error: AMQPError?, now: UInt64) -> EndedAction {
        let failure = error ?? AMQPError(.closed, "outgoing connection '\(configuration.name)': closed")
        let settlements = tracker.reset().map {
            settle($0, .failure(failure), failure.code == .confirmTimeout ? .confirmTimeout : .failed)
        }
        if error != nil { reconnects += 1 }
        var action = ended(error, now: now)
        action.settlements = settlements
        return action
    }

    // MARK: The owner: blocking calls

    /// Before a blocking librabbitmq call or write that may take up to `limit` ns.
    mutating func willBlock(now: UInt64, limit: UInt64) {
        blocked = (now, limit)
    }

    mutating func unblocked() {
        blocked = nil
    }

    // MARK: Private

    private mutating func ended(_ error: AMQPError?, now: UInt64) -> EndedAction {
        let unwritten = queue
        queue.removeAll()
        inFlight -= unwritten.count
        if stopping || error == nil {
            return EndedAction(settlements: [], unwritten: unwritten, change: change(to: .closed, error: nil), backOffUntil: nil)
        }
        let until = now &+ backoff
        backoff = min(backoff &* 2, configuration.maximumBackoff)
        return EndedAction(settlements: [], unwritten: unwritten, change: change(to: .backingOff, error: error?.message),
                           backOffUntil: until)
    }

    private mutating func settle(_ settled: (Send, ConfirmTracker<Send>.Outcome)) -> Settlement {
        let name = configuration.name
        switch settled.1 {
        case .confirmed:
            return settle(settled.0, .success(()), .confirmed)
        case .returned(let code, let text):
            return settle(settled.0, .failure(AMQPError(.returned, "outgoing connection '\(name)': the broker returned the message: \(code) \(text)")),
                          .returned)
        case .nacked:
            return settle(settled.0, .failure(AMQPError(.nacked, "outgoing connection '\(name)': the broker nacked the message")), .nacked)
        }
    }

    private mutating func settle(_ send: Send, _ result: Result<Void, AMQPError>, _ outcome: SendOutcome) -> Settlement {
        inFlight -= 1
        return Settlement(send: send, result: result, outcome: outcome)
    }

    private mutating func change(to status: ConnectionStatus, error: String?) -> StatusChange? {
        let changed = self.status != status || (error != nil && lastError != error)
        self.status = status
        if let error { lastError = error }
        return changed ? StatusChange(status: status, error: error) : nil
    }
}
