/// Where Redis is and how to use it (server.conf `[kvdb]`).
public struct RedisConfiguration: Sendable, Equatable {
    /// `host`, default 127.0.0.1.
    public var host = "127.0.0.1"
    /// `port`, default 6379.
    public var port = 6379
    /// `unix_socket_path`: used instead of host and port when set.
    public var unixSocketPath: String?
    /// `password` or `password_file`: sent with AUTH after connecting.
    public var password: String?
    /// `db`, default 0: selected after connecting.
    public var database = 0
    /// `timeout_ms`, default 2000: connect, and each command's reply.
    public var timeoutMilliseconds = 2000
    /// `pool_size`, default 4: connections, each used by one thread at a time.
    public var poolSize = 4
    /// After a failed connect, calls fail at once (no new attempt) for this long.
    public var retryIntervalMilliseconds = 500
    /// A connection idle this long is sent PING by the pool's housekeeping (dropped if it
    /// fails), so that calls do not find it dead. Default 15,000; not a server.conf key (the
    /// tests shorten it).
    public var idlePingMilliseconds = 15_000

    public init() {}

    /// `host:port` or the socket path, for messages.
    public var address: String { unixSocketPath ?? "\(host):\(port)" }
}
