import ESBAMQP

/// An AMQP pool as health reports it: how many connections are in each state, and each one.
public struct PoolHealth: Sendable, Codable, Equatable {
    /// Connections up.
    public var connected: Int
    /// Connections opening.
    public var connecting: Int
    /// Connections waiting before their next attempt.
    public var backingOff: Int
    /// The latest failure of any connection.
    public var lastError: String?
    /// Each connection.
    public var connections: [Connection]

    /// One pooled connection.
    public struct Connection: Sendable, Codable, Equatable {
        /// Its place in the pool, from 0.
        public var index: Int
        /// `connecting`, `connected`, `backing_off` or `closed`.
        public var status: String
        /// Messages queued or written and not yet confirmed.
        public var inFlight: Int
        /// Why the connection last failed, if it has.
        public var lastError: String?
        /// Reconnects since the pool started.
        public var reconnects: Int

        enum CodingKeys: String, CodingKey {
            case index, status, inFlight = "in_flight", lastError = "last_error", reconnects
        }
    }

    init(_ snapshots: [ConnectionSnapshot]) {
        connected = snapshots.filter { $0.status == .connected }.count
        connecting = snapshots.filter { $0.status == .connecting }.count
        backingOff = snapshots.filter { $0.status == .backingOff }.count
        lastError = snapshots.compactMap(\.lastError).last
        connections = snapshots.map {
            Connection(index: $0.index, status: $0.status.rawValue, inFlight: $0.inFlight, lastError: $0.lastError,
                       reconnects: $0.reconnects)
        }
    }

    enum CodingKeys: String, CodingKey {
        case connected, connecting, backingOff = "backing_off", lastError = "last_error", connections
    }
}
