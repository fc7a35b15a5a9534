import Foundation
import GRDB
import Logging

/// ``ObjectRecords`` on SQLite: the `config_object` table; a transaction is one GRDB write.
struct SQLiteObjectRecords: ObjectRecords {
    let pool: DatabasePool

    /// A SQLite ODB has one server: no one else changes its objects.
    func followOtherServers(logger: Logger, changed: @escaping @Sendable (Set<String>?) async -> Void) async {}

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

    func transact<T: Sendable>(
        reading keys: Set<ObjectKey>,
        _ plan: @escaping @Sendable ([ObjectKey: StoredObject]) throws -> (writes: [ObjectWrite], value: T)
    ) async throws -> T {
        // A GRDB write is one `BEGIN IMMEDIATE` transaction: SQLite's single writer runs
        // transactions one at a time, so what the plan was handed stays true until commit.
        // Throwing rolls it back.
        try await pool.write { db in
            var objects: [ObjectKey: StoredObject] = [:]
            for key in keys {
                if let object = try Self.fetch(db, kind: key.kind, name: key.name) { objects[key] = object }
            }
            let (writes, value) = try plan(objects)
            let failures = try Self.apply(db, writes)
            if !failures.isEmpty { throw ObjectWritesRefused(failures: failures) }
            return value
        }
    }

    private static func apply(_ db: Database, _ writes: [ObjectWrite]) throws -> [ObjectWriteFailure] {
        let inserted = Set(writes.compactMap { write -> ObjectKey? in
            guard case .insert = write.action else { return nil }
            return ObjectKey(kind: write.kind, name: write.name)
        })
        var failures: [ObjectWriteFailure] = []
        for (index, write) in writes.enumerated() {
            let current = try fetch(db, kind: write.kind, name: write.name)
            var reasons: [ObjectWriteFailure.Reason] = []
            switch write.action {
            case .insert:
                if current != nil { reasons.append(.exists) }
            case .update, .setSecret:
                if current == nil {
                    reasons.append(.notFound)
                }
            case .delete(let referrers):
                if current == nil {
                    reasons.append(.notFound)
                }
                var users: [ObjectKey] = []
                for referrer in referrers {
                    users += try String.fetchAll(db, sql: "SELECT name FROM config_object WHERE kind = ? AND json_extract(body, ?) = ? ORDER BY name",
                                                 arguments: [referrer.kind, "$." + referrer.field, write.name])
                        .map { .init(kind: referrer.kind, name: $0) }
                }
                if !users.isEmpty { reasons.append(.inUse(users)) }
            }
            let own = ObjectKey(kind: write.kind, name: write.name)
            for reference in write.references where reference.key == own || !inserted.contains(reference.key) {
                if try fetch(db, kind: reference.kind, name: reference.name) == nil {
                    reasons.append(.missingReference(reference))
                }
            }
            guard reasons.isEmpty else {
                failures += reasons.map { ObjectWriteFailure(index: index, reason: $0) }
                continue
            }
            let now = Date()
            switch write.action {
            case .insert(let body):
                try db.execute(sql: "INSERT INTO config_object(kind, name, body, secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [write.kind, write.name, body, write.sealedSecret, now, now])
            case .update(let body):
                try db.execute(sql: "UPDATE config_object SET body = ?, secret = coalesce(?, secret), updated_at = ? WHERE kind = ? AND name = ?",
                               arguments: [body, write.sealedSecret, now, write.kind, write.name])
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
