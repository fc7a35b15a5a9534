import ESBStore
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// ``ClusterRecords`` on PostgreSQL. The name is held by a session advisory lock on a
/// connection of its own (outside the pool): PostgreSQL releases it when that connection
/// ends, so a server killed with `kill -9` and started again gets its name back at once,
/// and no two live processes ever hold it. The heartbeat runs on the same connection, so a
/// heartbeat that succeeds proves the name is still held.
actor PostgresClusterRecords: ClusterRecords {
    let odb: PostgresODB
    private var session: PostgresConnection?
    private var serverID: Int32?
    private var name = ""
    private var logger: Logger { odb.logger }

    /// The first half of the name lock's two-number key ("ESBS"); the second is the server's
    /// `esb_server.id`.
    static let nameLockSpace: Int32 = 0x4553_4253
    /// The second number of the ODB's own lock (no server has id 0): each running server
    /// holds it shared, `esb odb copy` exclusively, so that neither starts while the other runs.
    static let odbLock: Int32 = 0

    /// The ODB's clock in milliseconds since 1970.
    static let now = "(extract(epoch from clock_timestamp()) * 1000)::bigint"

    init(odb: PostgresODB) {
        self.odb = odb
    }

    /// A membership dropped without ``leave()`` (a test, a failed start) still ends its
    /// session, and with it the name.
    deinit {
        // The connection must outlive its close (PostgresNIO asserts so).
        if let session { (session.close() as EventLoopFuture<Void>).whenComplete { _ in withExtendedLifetime(session) {} } }
    }

    /// Migration `v7-cluster`.
    static let createTable = [
        """
        CREATE TABLE esb_server (id serial PRIMARY KEY, name text NOT NULL UNIQUE, address text NOT NULL DEFAULT '',
          version text NOT NULL DEFAULT '', started_at bigint, last_seen bigint, stopped_at bigint)
        """,
    ]

    func join(name: String, cluster: String, address: String, version: String) async throws(StoreError) {
        self.name = name
        let connection = try await odb.connectSession()
        do {
            // Before anything is written: a copy into this ODB may be running.
            try await holdODBShared(on: connection)
            let id = try await register(on: connection, name: name, cluster: cluster)
            try await takeName(on: connection, id: id)
            try await connection.run("""
                UPDATE esb_server SET address = \(address), version = \(version), started_at = \(unescaped: Self.now),
                  last_seen = \(unescaped: Self.now), stopped_at = NULL WHERE id = \(id)
                """, logger: logger)
            session = connection
            serverID = id
        } catch {
            try? await connection.close()
            throw PostgresODB.storeError(error, settings: odb.settings)
        }
    }

    /// Checks the cluster name and makes sure `name` has its row; returns its id.
    private func register(on connection: PostgresConnection, name: String, cluster: String) async throws -> Int32 {
        try await connection.run("BEGIN", logger: logger)
        do {
            try await connection.run(
                "INSERT INTO esb_meta(key, value) VALUES ('cluster_name', \(cluster)) ON CONFLICT (key) DO NOTHING", logger: logger)
            for try await existing in try await connection.query(
                "SELECT value FROM esb_meta WHERE key = 'cluster_name'", logger: logger).decode(String.self) where existing != cluster {
                throw StoreError(.refused, "[cluster] name '\(cluster)' is not the cluster of ODB \(odb.settings): it belongs to "
                    + "cluster '\(existing)'. Every server of one ODB names the same cluster")
            }
            try await connection.run("INSERT INTO esb_server(name) VALUES (\(name)) ON CONFLICT (name) DO NOTHING", logger: logger)
            var id: Int32?
            for try await value in try await connection.query(
                "SELECT id FROM esb_server WHERE name = \(name)", logger: logger).decode(Int32.self) {
                id = value
            }
            try await connection.run("COMMIT", logger: logger)
            guard let id else { throw StoreError("ODB \(odb.settings): server '\(name)' has no row after it was recorded") }
            return id
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Takes the ODB's lock shared and the session lock of server `id`.
    /// - Throws: ``StoreError/Cause/refused`` when another session holds the name, or
    ///   `esb odb copy` holds the ODB.
    private func takeName(on connection: PostgresConnection, id: Int32) async throws {
        try await holdODBShared(on: connection)
        var taken = false
        for try await value in try await connection.query(
            "SELECT pg_try_advisory_lock(\(Self.nameLockSpace), \(id))", logger: logger).decode(Bool.self) {
            taken = value
        }
        guard taken else {
            throw StoreError(.refused, "[main] name '\(name)' is in use: another server with that name is running on ODB "
                + "\(odb.settings). Give each server of a cluster its own [main] name")
        }
    }

    /// Takes the ODB's lock shared for the session (held once per call; all go with the session).
    private func holdODBShared(on connection: PostgresConnection) async throws {
        var shared = false
        for try await value in try await connection.query(
            "SELECT pg_try_advisory_lock_shared(\(Self.nameLockSpace), \(Self.odbLock))", logger: logger).decode(Bool.self) {
            shared = value
        }
        guard shared else {
            throw StoreError(.refused, "ODB \(odb.settings) is held by esb odb copy: start server '\(name)' once the copy has ended")
        }
    }

    func heartbeat(address: String) async throws {
        guard let id = serverID else { return }
        if session == nil || session?.isClosed == true {
            // The connection holding the name was lost (a PostgreSQL restart): the lock went
            // with it. Take it again on a new connection.
            try? await session?.close()
            session = nil
            // Only a name held by another process stops the server; anything else is retried.
            let connection: PostgresConnection
            do {
                connection = try await odb.connectSession()
            } catch {
                throw StoreError(.unavailable, error.message)
            }
            do {
                try await takeName(on: connection, id: id)
            } catch {
                try? await connection.close()
                throw error
            }
            session = connection
            logger.notice("server name held again after the ODB connection was lost", metadata: ["esb.server": "\(name)"])
        }
        guard let session else { return }
        do {
            try await session.query("""
                UPDATE esb_server SET last_seen = \(unescaped: Self.now), address = \(address), stopped_at = NULL WHERE id = \(id)
                """, logger: logger)
        } catch {
            try? await session.close()
            // Only this beat's connection: another may have replaced it meanwhile.
            if self.session === session { self.session = nil }
            throw error
        }
    }

    func dropSession() async {
        // Closing fails the query stuck on it; the stuck heartbeat then clears `session`.
        if let session { _ = session.close() as EventLoopFuture<Void> }
    }

    func leave() async {
        guard let session else { return }
        if let id = serverID {
            do {
                try await session.query("UPDATE esb_server SET stopped_at = \(unescaped: Self.now) WHERE id = \(id)", logger: logger)
            } catch {
                logger.warning("cannot record the clean stop in the cluster", metadata: ["esb.error": "\(StoreError.describe(error))"])
            }
        }
        try? await session.close()
        self.session = nil
    }

    /// Takes the ODB's lock exclusively on a connection of its own, held until this object
    /// ends: no server starts meanwhile. Servers that predate the lock are found by their
    /// name locks.
    func holdWithNoServer(for job: String, recentlySeen: Duration) async throws(StoreError) {
        let recentMS = Int64(recentlySeen.components.seconds) * 1000
        let connection = try await odb.connectSession()
        var running: [String] = []
        var recent: [String] = []
        var held = false
        do {
            for try await value in try await connection.query(
                "SELECT pg_try_advisory_lock(\(Self.nameLockSpace), \(Self.odbLock))", logger: logger).decode(Bool.self) {
                held = value
            }
            var hasServers = false
            for try await value in try await connection.query(
                "SELECT to_regclass('esb_server') IS NOT NULL", logger: logger).decode(Bool.self) {
                hasServers = value
            }
            if hasServers {
                // A running server holds its name's session lock (see `takeName`).
                let rows = try await connection.query("""
                    SELECT s.name FROM esb_server s JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted
                      AND l.classid = \(Self.nameLockSpace)::oid AND l.objid = s.id::oid AND l.objsubid = 2
                      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    ORDER BY s.name COLLATE "C"
                    """, logger: logger)
                for try await name in rows.decode(String.self) { running.append(name) }
                // A server whose connection holding its name broke still serves until its next
                // heartbeat takes the name again: one seen lately without a clean stop counts too.
                for try await (name, age) in try await connection.query("""
                    SELECT name, \(unescaped: Self.now) - last_seen FROM esb_server
                    WHERE stopped_at IS NULL AND last_seen >= \(unescaped: Self.now) - \(recentMS)
                    ORDER BY name COLLATE "C"
                    """, logger: logger).decode((String, Int64).self) where !running.contains(name) {
                    recent.append("'\(name)' (seen \(max(0, age) / 1000) s ago without a clean stop)")
                }
            }
        } catch {
            try? await connection.close()
            throw PostgresODB.storeError(error, settings: odb.settings)
        }
        guard held, running.isEmpty, recent.isEmpty else {
            try? await connection.close()
            let servers = !running.isEmpty ? "running server(s) \(running.map { "'\($0)'" }.joined(separator: ", "))"
                : !recent.isEmpty ? "server(s) \(recent.joined(separator: ", ")); if stopped, try again \(recentMS / 1000) s after"
                : "a running server or another esb odb copy"
            throw StoreError(.refused, "ODB \(odb.settings) is in use by \(servers). Stop every server of the cluster before \(job)")
        }
        session = connection
    }

    func servers(leaseMS: Int64) async throws -> [ClusterServer] {
        var servers: [ClusterServer] = []
        let rows = try await odb.query("""
            SELECT name, address, version, started_at, last_seen, stopped_at, \(unescaped: Self.now)
            FROM esb_server ORDER BY name COLLATE "C"
            """, logger: logger)
        for try await (name, address, version, startedAt, lastSeen, stoppedAt, now)
            in rows.decode((String, String, String, Int64?, Int64?, Int64?, Int64).self) {
            servers.append(ClusterServer(name: name, address: address, version: version, startedAt: startedAt,
                                         lastSeen: lastSeen, stoppedAt: stoppedAt, now: now, leaseMS: leaseMS))
        }
        return servers
    }
}
