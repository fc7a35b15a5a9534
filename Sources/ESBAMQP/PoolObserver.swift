/// What a pooled connection is doing.
public enum ConnectionStatus: String, Sendable {
    case connecting
    case connected
    /// Waiting before the next connect attempt.
    case backingOff = "backing_off"
    case closed
}

/// How one send ended.
public enum SendOutcome: String, Sendable {
    /// The broker acked it.
    case confirmed
    /// Written to the socket with confirms off.
    case written
    case returned
    case nacked
    case confirmTimeout = "confirm_timeout"
    /// Connection or channel failure, pool timeout, shutdown.
    case failed
}

/// Hears about a pool's events, on the connections' owner threads: keep it quick and
/// non-blocking (increment a metric, write a log line).
public protocol PoolObserver: Sendable {
    /// A connection changed state; `error` says why it left `connected` or failed to get there.
    func connectionChanged(pool: String, index: Int, status: ConnectionStatus, error: String?)
    /// A message was written to a socket.
    func published(pool: String)
    /// A send finished.
    func settled(pool: String, outcome: SendOutcome)
}

/// One pooled connection's state, for health pages.
public struct ConnectionSnapshot: Sendable, Equatable {
    public var index: Int
    public var status: ConnectionStatus
    /// Messages queued or written and not yet confirmed.
    public var inFlight: Int
    /// Why the connection last failed, if it has.
    public var lastError: String?
    /// Reconnects since the pool started.
    public var reconnects: Int
}
