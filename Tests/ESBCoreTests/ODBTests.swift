import Foundation
import Synchronization
import GRDB
import Testing
import ESBStore
@testable import ESBCore

/// GRDB's Linux support is not tested upstream: these run it against a real file.
@Suite struct ODBTests {
    func temporaryDatabase() -> String { TestODB.sqlitePath() }

    @Test func opensInWALModeWithMigrationsApplied() async throws {
        let odb = try ODB(path: temporaryDatabase())
        #expect(try await odb.journalMode() == "wal")
        #expect(try await odb.appliedMigrations() == ["v1-meta", "v10-dashboard-sessions", "v11-scheduler", "v12-scheduler-runs-once", "v2-deployments", "v3-config-objects", "v4-crash-tracking", "v5-async", "v6-library-imports", "v7-cluster", "v8-async-claims", "v9-cluster-deployments"])
        #expect(await odb.check() == nil)
        #expect(FileManager.default.fileExists(atPath: odb.location + "-wal"))
    }

    @Test func reopeningKeepsDataAndDoesNotRerunMigrations() async throws {
        let path = temporaryDatabase()
        let first = try ODB(path: path)
        let created = try await first.sqlite.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'created_at'")
        }
        let second = try ODB(path: path)
        let again = try await second.sqlite.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'created_at'")
        }
        #expect(created != nil && created == again)
    }

    @Test func readersSeeTheLastCommitWhileAWriteIsOpen() async throws {
        let odb = try ODB(path: temporaryDatabase())
        try await odb.sqlite.write { db in
            try db.execute(sql: "INSERT INTO esb_meta(key, value) VALUES ('k', 'committed')")
        }
        try await odb.sqlite.write { db in
            try db.execute(sql: "UPDATE esb_meta SET value = 'uncommitted' WHERE key = 'k'")
            // Another connection, in WAL mode, is not blocked and sees the committed value.
            let seen = try DatabaseQueue(path: odb.location).read { db in
                try String.fetchOne(db, sql: "SELECT value FROM esb_meta WHERE key = 'k'")
            }
            #expect(seen == "committed")
        }
    }

    @Test func anUnopenablePathIsANamedError() {
        do {
            _ = try ODB(path: "/proc/esb-cannot-exist/esb.db")
            Issue.record("expected an error")
        } catch {
            #expect(error.message.contains("/proc/esb-cannot-exist/esb.db"))
        }
    }
}

extension ODB {
    /// The SQLite engine's pool, for tests that look at the rows themselves.
    var sqlite: DatabasePool {
        guard case .sqlite(let pool) = connection else { preconditionFailure("not a SQLite ODB: \(location)") }
        return pool
    }
}

/// The PostgreSQL engine against the server `scripts/services` runs: schema versions,
/// concurrent starts, and what a start does with each kind of failure.
@Suite struct PostgresODBTests {
    @Test func migratesTheWholeSchemaAndAnswersChecks() async throws {
        let odb = try await TestODB.make(.postgresql)
        #expect(odb.engine == .postgresql)
        #expect(try await odb.appliedMigrations() == ["v1-meta", "v10-dashboard-sessions", "v11-scheduler", "v2-deployments", "v3-config-objects", "v4-crash-tracking", "v5-async", "v6-library-imports", "v7-cluster", "v8-async-claims", "v9-cluster-deployments"])
        // v12 is a step of SQLite alone: older servers of a cluster still start on the ODB.
        #expect(try await odb.meta("created_at") != nil)
        #expect(await odb.check() == nil)
        #expect(try await odb.meta("last_health_check") != nil)
        #expect(try await odb.journalMode() == nil)
        #expect(!odb.location.contains("esb:esb"), "the location never carries the password")
    }

    /// Servers started together on an empty database migrate it once, one after another.
    @Test func concurrentStartsOnOneDatabaseMigrateItOnce() async throws {
        let settings = try await TestODB.createPostgresDatabase()
        let opened = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let odb = try await ODB.open(.postgresql(settings), schema: ODBSchema.migrations, logger: TestODB.logger)
                    return try await odb.appliedMigrations()
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(opened.count == 4)
        #expect(Set(opened).count == 1)
        #expect(opened.first?.count == ODBSchema.migrations.filter { $0.postgresql != nil }.count + 1)
    }

    @Test func aSchemaNewerThanTheServerIsRefusedNamingBothVersions() async throws {
        let odb = try await TestODB.make(.postgresql)
        guard case .postgresql(let postgres) = odb.connection else { return }
        try await postgres.client.query("INSERT INTO esb_migration(identifier) VALUES ('v99-from-the-future')")
        do {
            _ = try await TestODB.again(odb)
            Issue.record("expected a refusal")
        } catch let error as StoreError {
            #expect(error.cause == .refused)
            #expect(error.message.contains("v99-from-the-future"))
            #expect(error.message.contains(ODBSchema.migrations.last!.identifier))
        }
    }

    @Test func aWrongPasswordIsRefusedAtOnce() async throws {
        let settings = try await TestODB.createPostgresDatabase()
        var wrong = settings
        wrong.password = "not-the-password"
        let error = await #expect(throws: StoreError.self) {
            _ = try await ODB.open(.postgresql(wrong), schema: ODBSchema.migrations, logger: TestODB.logger)
        }
        #expect(error?.cause == .refused)
        #expect(error?.message.contains("[odb]") == true)
        #expect(error?.message.contains("password authentication failed") == true)
        #expect(error?.message.contains("not-the-password") == false)
    }

    @Test func aMissingDatabaseIsRefusedNamingIt() async throws {
        let settings = TestODB.postgresSettings(database: "esb_missing_\(UUID().uuidString.prefix(8).lowercased())")
        let error = await #expect(throws: StoreError.self) {
            _ = try await ODB.open(.postgresql(settings), schema: ODBSchema.migrations, logger: TestODB.logger)
        }
        #expect(error?.cause == .refused)
        #expect(error?.message.contains(settings.database) == true)
    }

    /// Nothing listens: every failed attempt is reported, then the start gives up as
    /// unavailable (worth a restart by systemd), not refused.
    @Test func anUnreachableServerIsRetriedUntilTheConnectTimeout() async throws {
        var settings = TestODB.postgresSettings(database: "esb")
        // Bound but not listening for the whole test: refused, and nobody else can listen there.
        let (socket, port) = Self.closedPort()
        defer { close(socket) }
        settings.port = port
        settings.connectTimeout = .seconds(2)
        let attempts = Mutex(0)
        let error = await #expect(throws: StoreError.self) {
            _ = try await ODB.open(.postgresql(settings), schema: ODBSchema.migrations, logger: TestODB.logger) { _, _ in
                attempts.withLock { $0 += 1 }
            }
        }
        #expect(error?.cause == .unavailable)
        #expect(error?.message.contains("cannot be reached") == true)
        let made = attempts.withLock { $0 }
        #expect(made >= 1 && error?.message.contains("after \(made) attempts") == true)
    }

    /// A loopback port bound by the returned socket and not listened on, until it is closed.
    static func closedPort() -> (socket: Int32, port: Int) {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return (socket, Int(UInt16(bigEndian: address.sin_port)))
    }
}

@Suite struct SQLiteSchemaVersionTests {
    @Test func aSchemaNewerThanTheServerIsRefusedNamingBothVersions() async throws {
        let path = TestODB.sqlitePath()
        let odb = try ODB(path: path)
        try await odb.sqlite.write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations(identifier) VALUES ('v99-from-the-future')")
        }
        do {
            _ = try ODB(path: path)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.cause == .refused)
            #expect(error.message.contains("v99-from-the-future") && error.message.contains("v12-scheduler-runs-once"))
        }
    }
}
