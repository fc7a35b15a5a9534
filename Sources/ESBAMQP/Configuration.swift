/// Where and how to connect to a broker (a `def_amqp` object).
public struct BrokerConfiguration: Sendable, Equatable {
    public var host: String
    /// `port`, default 5672.
    public var port: Int = 5672
    /// `vhost`, default `/`.
    public var virtualHost: String = "/"
    public var username: String = "guest"
    public var password: String = "guest"
    /// `frame_max`, default 131072.
    public var frameMax: Int = 131_072
    /// `heartbeat` in seconds, default 30; 0 turns heartbeats off.
    public var heartbeatSeconds: Int = 30
    /// `connect_timeout_ms`, default 5000: TCP connect, TLS and AMQP handshake each.
    public var connectTimeoutMilliseconds: Int = 5000
    /// `tls`, default false.
    public var tls: Bool = false
    /// `tls_ca_path`: a PEM bundle; default the system CAs.
    public var tlsCAPath: String?
    /// `tls_verify`, default true: verify the peer certificate and host name.
    public var tlsVerify: Bool = true

    public init(host: String) { self.host = host }

    /// `host:port/vhost`, for messages (never the credentials).
    public var address: String { "\(host):\(port)\(virtualHost.hasPrefix("/") ? "" : "/")\(virtualHost)" }
}

/// A pool of confirmed publishing connections (an `outconn_amqp` object).
public struct PoolConfiguration: Sendable, Equatable {
    /// The outconn's name, used in every message.
    public var name: String
    public var broker: BrokerConfiguration
    /// `pool_size`, default 4: connections, each with its own channel and owner thread.
    public var size: Int = 4
    /// `confirm`, default true: publisher confirms; `send` returns after the broker's ack.
    public var confirm: Bool = true
    /// `confirm_timeout_ms`, default 5000; a connection that misses it is discarded.
    public var confirmTimeoutMilliseconds: Int = 5000
    /// `acquire_timeout_ms`, default 5000: how long a send waits for a usable connection.
    public var acquireTimeoutMilliseconds: Int = 5000
    /// Messages in flight per connection (written, not yet confirmed), default 1024.
    public var window: Int = 1024
    /// First reconnect delay; doubles up to ``maximumBackoffSeconds``, with jitter.
    public var initialBackoffSeconds: Double = 1
    public var maximumBackoffSeconds: Double = 60
    /// The header a mandatory message carries its delivery tag in, so that a Basic.Return
    /// (which has no delivery tag) can be matched to its send. The application names it.
    public var returnTagHeader: String

    public init(name: String, broker: BrokerConfiguration, returnTagHeader: String) {
        self.name = name
        self.broker = broker
        self.returnTagHeader = returnTagHeader
    }
}

/// The consumers of one queue (a `channel_amqp` object).
public struct ConsumerConfiguration: Sendable, Equatable {
    /// The channel's name, used in every message.
    public var name: String
    public var broker: BrokerConfiguration
    public var queue: String
    /// `consumers`, default 1: each its own connection, channel and owner thread.
    public var consumers: Int = 1
    /// `prefetch`, default 10: unacked deliveries per consumer (`basic.qos`).
    public var prefetch: Int = 10
    /// First reconnect delay; doubles up to ``maximumBackoffSeconds``, with jitter.
    public var initialBackoffSeconds: Double = 1
    public var maximumBackoffSeconds: Double = 60
    /// Consumer tags are this plus `.N` (the consumer's index), for the broker's listings.
    public var consumerTagPrefix: String

    public init(name: String, broker: BrokerConfiguration, queue: String, consumerTagPrefix: String) {
        self.name = name
        self.broker = broker
        self.queue = queue
        self.consumerTagPrefix = consumerTagPrefix
    }
}
