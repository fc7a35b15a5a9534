import Foundation
import GRDB
import Testing
import ESBStore
@testable import ESBCore

/// GRDB's Linux support is not tested upstream: these run it against a real file.
@Suite struct ODBTests {
    func temporaryDatabase() -> String {
        FileManager.default.temporaryDirectory
            .appendingPathComponent("esb-odb-\(UUID().uuidString)/esb.db").path
    }

    @Test func opensInWALModeWithMigrationsApplied() async throws {
        let odb = try ODB(path: temporaryDatabase())
        #expect(try await odb.journalMode() == "wal")
        #expect(try await odb.appliedMigrations() == ["v1-meta", "v2-deployments", "v3-config-objects", "v4-crash-tracking", "v5-async", "v6-library-imports"])
        #expect(await odb.check() == nil)
        #expect(FileManager.default.fileExists(atPath: odb.path + "-wal"))
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
            let seen = try DatabaseQueue(path: odb.path).read { db in
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
        switch connection {
        case .sqlite(let pool): pool
        }
    }
}
