import ESBStore
import Foundation
import GRDB
import Synchronization

/// ``ClusterRecords`` on SQLite: one server per ODB file. The file is locked with `flock(2)`
/// for as long as the server runs (the kernel lets the lock go when the process ends,
/// however it ends), so a second server started on the same file is refused.
final class SQLiteClusterRecords: ClusterRecords {
    let pool: DatabasePool
    let path: String
    /// The descriptor holding the lock, open until the server stops.
    private let lockFile = Mutex<Int32>(-1)
    private let name = Mutex("")

    init(pool: DatabasePool, path: String) {
        self.pool = pool
        self.path = path
    }

    deinit {
        let descriptor = lockFile.withLock { $0 }
        if descriptor >= 0 { close(descriptor) }
    }

    /// Migration `v7-cluster`.
    static func createTable(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE esb_server (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, address TEXT NOT NULL DEFAULT '',
              version TEXT NOT NULL DEFAULT '', started_at INTEGER, last_seen INTEGER, stopped_at INTEGER)
            """)
    }

    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    func join(name: String, cluster: String, address: String, version: String) async throws(StoreError) {
        try lock { reason in
            StoreError(.refused, "[odb] path '\(path)' is in use: \(reason). A SQLite ODB serves one server; "
                + "for more, put the ODB on PostgreSQL ([odb] engine = postgresql)")
        }
        self.name.withLock { $0 = name }
        do {
            try await pool.write { db in
                try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('cluster_name', ?) ON CONFLICT(key) DO NOTHING",
                               arguments: [cluster])
                let existing = try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'cluster_name'")
                if let existing, existing != cluster {
                    throw StoreError(.refused, "[cluster] name '\(cluster)' is not the cluster of ODB '\(self.path)': it belongs to "
                        + "cluster '\(existing)'. Every server of one ODB names the same cluster")
                }
                let now = Self.now()
                try db.execute(sql: """
                    INSERT INTO esb_server(name, address, version, started_at, last_seen, stopped_at) VALUES (?, ?, ?, ?, ?, NULL)
                    ON CONFLICT(name) DO UPDATE SET address = excluded.address, version = excluded.version,
                      started_at = excluded.started_at, last_seen = excluded.last_seen, stopped_at = NULL
                    """, arguments: [name, address, version, now, now])
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError("ODB '\(path)': cannot record server '\(name)': \(error)")
        }
    }

    func holdWithNoServer(for job: String, recentlySeen: Duration) async throws(StoreError) {
        try lock { reason in
            StoreError(.refused, "ODB '\(path)' is in use: \(reason). Stop the server before \(job)")
        }
    }

    /// Takes the file's lock until ``leave()`` or the end of the process.
    /// - Throws: `refused(reason)` when another process holds it.
    private func lock(refused: (String) -> StoreError) throws(StoreError) {
        // SQLite's own locks are fcntl(2) locks, which Linux keeps apart from flock(2) ones.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StoreError("ODB '\(path)' cannot be opened to lock it: \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "another server is running on it" : String(cString: strerror(errno))
            close(descriptor)
            throw refused(reason)
        }
        lockFile.withLock { $0 = descriptor }
    }

    func heartbeat(address: String) async throws {
        let name = self.name.withLock { $0 }
        try await pool.write { db in
            try db.execute(sql: "UPDATE esb_server SET last_seen = ?, address = ? WHERE name = ?",
                           arguments: [Self.now(), address, name])
        }
    }

    func dropSession() async {}

    func leave() async {
        let name = self.name.withLock { $0 }
        try? await pool.write { db in
            try db.execute(sql: "UPDATE esb_server SET stopped_at = ? WHERE name = ?", arguments: [Self.now(), name])
        }
        let descriptor = lockFile.withLock { descriptor in
            defer { descriptor = -1 }
            return descriptor
        }
        if descriptor >= 0 { close(descriptor) }
    }

    func servers(leaseMS: Int64) async throws -> [ClusterServer] {
        let now = Self.now()
        return try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT name, address, version, started_at, last_seen, stopped_at FROM esb_server ORDER BY name
                """).map { row in
                ClusterServer(name: row["name"], address: row["address"], version: row["version"], startedAt: row["started_at"],
                              lastSeen: row["last_seen"], stoppedAt: row["stopped_at"], now: now, leaseMS: leaseMS)
            }
        }
    }
}
