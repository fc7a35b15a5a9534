import Foundation
import GRDB

/// ``ObjectRecords`` on SQLite: the `config_object` table, a batch in one GRDB write
/// transaction (SQLite's single writer serializes batches).
struct SQLiteObjectRecords: ObjectRecords {
    let pool: DatabasePool

    /// The table, as migration `v3-config-objects` created it.
    static func createTable(_ db: Database) throws {
        try db.create(table: "config_object") { table in
            table.column("kind", .text).notNull()
            table.column("name", .text).notNull()
            table.column("body", .text).notNull()
            table.column("secret", .text)
            table.column("created_at", .datetime).notNull()
            table.column("updated_at", .datetime).notNull()
            table.primaryKey(["kind", "name"])
        }
    }

    func list(kind: String) async throws -> [StoredObject] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT kind, name, body, secret FROM config_object WHERE kind = ? ORDER BY name",
                             arguments: [kind]).map(Self.object)
        }
    }

    func get(kind: String, name: String) async throws -> StoredObject? {
        try await pool.read { db in try Self.fetch(db, kind: kind, name: name) }
    }

    func apply(_ writes: [ObjectWrite]) async throws -> [ObjectWriteFailure] {
        do {
            try await pool.write { db in
                let failures = try Self.apply(db, writes)
                // Throwing rolls the transaction back: a batch applies whole or not at all.
                if !failures.isEmpty { throw Refused(failures: failures) }
            }
            return []
        } catch let refused as Refused {
            return refused.failures
        }
    }

    private struct Refused: Error {
        var failures: [ObjectWriteFailure]
    }

    private static func apply(_ db: Database, _ writes: [ObjectWrite]) throws -> [ObjectWriteFailure] {
        let inserted = Set(writes.filter { if case .insert = $0.action { true } else { false } }
            .map { ObjectReference(field: "", kind: $0.kind, name: $0.name) })
        var failures: [ObjectWriteFailure] = []
        for (index, write) in writes.enumerated() {
            let current = try fetch(db, kind: write.kind, name: write.name)
            var reasons: [ObjectWriteFailure.Reason] = []
            switch write.action {
            case .insert:
                if current != nil { reasons.append(.exists) }
            case .update(let expectedBody):
                if current == nil { reasons.append(.notFound) } else if current?.body != expectedBody { reasons.append(.changed) }
            case .setSecret:
                if current == nil { reasons.append(.notFound) }
            case .delete(let referrers):
                if current == nil { reasons.append(.notFound) }
                var users: [ObjectWriteFailure.ReferringObject] = []
                for referrer in referrers {
                    users += try String.fetchAll(db, sql: "SELECT name FROM config_object WHERE kind = ? AND json_extract(body, ?) = ? ORDER BY name",
                                                 arguments: [referrer.kind, "$." + referrer.field, write.name])
                        .map { .init(kind: referrer.kind, name: $0) }
                }
                if !users.isEmpty { reasons.append(.inUse(users)) }
            }
            for reference in write.references
            where !inserted.contains(ObjectReference(field: "", kind: reference.kind, name: reference.name)) {
                if try fetch(db, kind: reference.kind, name: reference.name) == nil { reasons.append(.missingReference(reference)) }
            }
            guard reasons.isEmpty else {
                failures += reasons.map { ObjectWriteFailure(index: index, reason: $0) }
                continue
            }
            let now = Date()
            switch write.action {
            case .insert:
                try db.execute(sql: "INSERT INTO config_object(kind, name, body, secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [write.kind, write.name, write.body, write.sealedSecret, now, now])
            case .update:
                try db.execute(sql: "UPDATE config_object SET body = ?, secret = coalesce(?, secret), updated_at = ? WHERE kind = ? AND name = ?",
                               arguments: [write.body, write.sealedSecret, now, write.kind, write.name])
            case .setSecret:
                try db.execute(sql: "UPDATE config_object SET secret = ?, updated_at = ? WHERE kind = ? AND name = ?",
                               arguments: [write.sealedSecret, now, write.kind, write.name])
            case .delete:
                try db.execute(sql: "DELETE FROM config_object WHERE kind = ? AND name = ?", arguments: [write.kind, write.name])
            }
        }
        return failures
    }

    private static func fetch(_ db: Database, kind: String, name: String) throws -> StoredObject? {
        try Row.fetchOne(db, sql: "SELECT kind, name, body, secret FROM config_object WHERE kind = ? AND name = ?",
                         arguments: [kind, name]).map(object)
    }

    private static func object(_ row: Row) -> StoredObject {
        StoredObject(kind: row["kind"], name: row["name"], body: row["body"], sealedSecret: row["secret"])
    }
}
