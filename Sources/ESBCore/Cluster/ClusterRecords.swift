import ESBStore
import Foundation

/// One server of the cluster as `GET /esb/api/cluster` lists it.
public struct ClusterServer: Sendable, Codable, Equatable {
    /// Whether a server is running, as the ODB sees it.
    public enum Status: String, Sendable, Codable { case up, down }

    public var name: String
    /// Where its listener is (`host:port`), as it last said.
    public var address: String
    public var version: String
    /// When it started, and when it last renewed its heartbeat (the ODB's clock).
    public var startedAt: Date?
    public var lastSeen: Date?
    /// `up` while it renews its heartbeat within `[cluster] lease_seconds`; `down` once it
    /// stopped or went silent.
    public var status: Status

    public init(name: String, address: String, version: String, startedAt: Date?, lastSeen: Date?, status: Status) {
        self.name = name
        self.address = address
        self.version = version
        self.startedAt = startedAt
        self.lastSeen = lastSeen
        self.status = status
    }

    enum CodingKeys: String, CodingKey {
        case name, address, version, status
        case startedAt = "started_at"
        case lastSeen = "last_seen"
    }

    /// Every key, `null` for a time not recorded (a server whose start failed after it was listed).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(address, forKey: .address)
        try container.encode(version, forKey: .version)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(lastSeen, forKey: .lastSeen)
        try container.encode(status, forKey: .status)
    }
}

/// What ``ClusterMembership`` needs from the ODB, whatever the engine: the `esb_server`
/// table and the lock that makes a server name one process's.
///
/// Times are the ODB's own clock in milliseconds since 1970, so that servers whose clocks
/// differ still agree on who is silent.
protocol ClusterRecords: Sendable {
    /// Takes `name` for this process, in cluster `cluster`, and records it as started.
    /// - Throws: ``StoreError/Cause/refused`` when another live process holds the name, or
    ///   when the ODB belongs to a cluster of another name.
    func join(name: String, cluster: String, address: String, version: String) async throws(StoreError)
    /// Records that this server is alive (renewing the lease on the work it claimed), and
    /// where it listens. Re-takes the name first if the connection holding it was lost.
    func heartbeat(address: String) async throws
    /// Records a clean stop and lets the name go.
    func leave() async
    /// Closes the connection a heartbeat is stuck on: the heartbeat fails, and the next one
    /// opens a new connection and takes the name again.
    func dropSession() async
    /// Every server that ever joined, by name; `up` when its heartbeat is younger than `leaseMS`.
    func servers(leaseMS: Int64) async throws -> [ClusterServer]
    /// For work done while no server runs on the ODB (`esb odb copy`): refuses, naming the
    /// running servers, while any does. On SQLite it also keeps a server from starting until
    /// these records are released.
    func holdWithNoServer(for job: String, recentlySeen: Duration) async throws(StoreError)
}

extension ClusterServer {
    /// A row of `esb_server` as the API shows it, judged against the ODB's clock `now`.
    init(name: String, address: String, version: String, startedAt: Int64?, lastSeen: Int64?, stoppedAt: Int64?,
         now: Int64, leaseMS: Int64) {
        func date(_ ms: Int64?) -> Date? { ms.map { Date(timeIntervalSince1970: Double($0) / 1000) } }
        self.init(name: name, address: address, version: version, startedAt: date(startedAt), lastSeen: date(lastSeen),
                  status: stoppedAt == nil && (lastSeen ?? 0) >= now - leaseMS ? .up : .down)
    }
}
