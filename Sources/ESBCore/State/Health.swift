
/// What `GET /esb/health` reports: the server and each component's state.
public struct HealthReport: Sendable, Codable, Equatable {
    /// `ok` when every component is, `degraded` otherwise.
    public var status: Status
    public var server: String
    public var components: [String: Component]

    public enum Status: String, Sendable, Codable, CaseIterable { case ok, degraded }

    /// One component: the ODB, kvdb, an AMQP outconn's pool…
    public struct Component: Sendable, Codable, Equatable {
        public var status: Status
        /// What the component is doing or why it is degraded.
        public var detail: String?
        /// `true` for components the server cannot work without (the ODB): 503 when degraded.
        public var critical: Bool
        /// An AMQP outconn's connections.
        public var pool: PoolHealth?
        /// An AMQP channel's consumers.
        public var channel: ChannelHealth?
        /// The ODB's engine: `sqlite` or `postgresql`.
        public var engine: String?
        /// The cluster this server belongs to, as the ODB lists it.
        public var cluster: ClusterHealth?

        public init(status: Status, detail: String? = nil, critical: Bool = false, pool: PoolHealth? = nil,
                    engine: String? = nil, cluster: ClusterHealth? = nil, channel: ChannelHealth? = nil) {
            self.status = status
            self.detail = detail
            self.critical = critical
            self.pool = pool
            self.channel = channel
            self.engine = engine
            self.cluster = cluster
        }
    }

    /// The `cluster` component's figures.
    public struct ClusterHealth: Sendable, Codable, Equatable {
        /// `[cluster] name`.
        public var name: String
        /// The servers whose heartbeat is within the lease, by name.
        public var up: [String]
        /// Every server that ever joined.
        public var servers: Int
    }

    public init(server: String, components: [String: Component]) {
        self.server = server
        self.components = components
        status = components.values.allSatisfy { $0.status == .ok } ? .ok : .degraded
    }

    /// Whether a critical component is down (answer 503).
    public var isUnusable: Bool { components.values.contains { $0.critical && $0.status != .ok } }
}

extension HealthReport {
    /// The report without details: the server's and each component's status only, for
    /// callers without admin credentials.
    public var summary: Summary {
        Summary(status: status, server: server, components: components.mapValues { .init(status: $0.status) })
    }

    /// ``HealthReport`` as anyone may see it.
    public struct Summary: Sendable, Codable, Equatable {
        public var status: Status
        public var server: String
        public var components: [String: ComponentStatus]
    }

    /// A component's status alone.
    public struct ComponentStatus: Sendable, Codable, Equatable {
        public var status: Status
    }
}
