import ESBStore
import Foundation
import Logging
import PostgresNIO

/// ``ObjectRecords`` on PostgreSQL: the `config_object` table. Servers write objects
/// concurrently, so a transaction first takes one advisory lock for all object writes:
/// object transactions run one at a time across the cluster, as SQLite's single writer
/// runs them on one server, and what the plan was handed stays true until commit. Object
/// changes are rare; reads take no lock.
struct PostgresObjectRecords: ObjectRecords {
    let odb: PostgresODB
    /// This server's name, in the notifications of its changes (it skips its own).
    let server: String
    /// Counts object transactions, for the followers' polling.
    let counter = ChangeCounter(key: "objects_version")

    /// The lock object transactions hold ("OBJ" as a number).
    static let writeLock: Int64 = 0x4F_424A

    /// Migration `v3-config-objects`.
    static let createTable = [
        """
        CREATE TABLE config_object (
          kind text NOT NULL, name text NOT NULL, body text NOT NULL, secret text,
          created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (kind, name))
        """,
    ]

    func list(kind: String) async throws -> [StoredObject] {
        try await Self.objects(try await odb.query(
            "SELECT kind, name, body, secret FROM config_object WHERE kind = \(kind) ORDER BY name", logger: odb.logger))
    }

    func get(kind: String, name: String) async throws -> StoredObject? {
        try await Self.objects(try await odb.query(
            "SELECT kind, name, body, secret FROM config_object WHERE kind = \(kind) AND name = \(name)", logger: odb.logger)).first
    }

    func transact<T: Sendable>(
        reading keys: Set<ObjectKey>,
        _ plan: @escaping @Sendable ([ObjectKey: StoredObject]) throws -> (writes: [ObjectWrite], value: T)
    ) async throws -> T {
        let outcome = try await odb.transaction { connection in
            try await connection.run("SELECT pg_advisory_xact_lock(\(Self.writeLock))", logger: odb.logger)
            var objects: [ObjectKey: StoredObject] = [:]
            for key in keys {
                if let object = try await fetch(connection, key) { objects[key] = object }
            }
            let (writes, value) = try plan(objects)
            let failures = try await apply(connection, writes)
            if !failures.isEmpty { throw ObjectWritesRefused(failures: failures) }
            try await PostgresObjectChanges.notify(connection, server: server, kinds: Set(writes.map(\.kind)), logger: odb.logger)
            let version = writes.isEmpty ? nil : try await counter.bump(on: connection, logger: odb.logger)
            return (value, version)
        }
        if let version = outcome.1 { counter.committed(version) }
        return outcome.0
    }

    func followOtherServers(logger: Logger, changed: @escaping @Sendable (Set<String>?) async -> Void) async {
        await PostgresObjectChanges.follow(odb, server: server, counter: counter, changed: changed)
    }

    private func apply(_ connection: PostgresConnection, _ writes: [ObjectWrite]) async throws -> [ObjectWriteFailure] {
        let logger = odb.logger
        let inserted = Set(writes.compactMap { write -> ObjectKey? in
            guard case .insert = write.action else { return nil }
            return ObjectKey(kind: write.kind, name: write.name)
        })
        var failures: [ObjectWriteFailure] = []
        for (index, write) in writes.enumerated() {
            let own = ObjectKey(kind: write.kind, name: write.name)
            let current = try await fetch(connection, own)
            var reasons: [ObjectWriteFailure.Reason] = []
            switch write.action {
            case .insert:
                if current != nil { reasons.append(.exists) }
            case .update, .setSecret:
                if current == nil { reasons.append(.notFound) }
            case .delete(let referrers):
                if current == nil { reasons.append(.notFound) }
                var users: [ObjectKey] = []
                for referrer in referrers {
                    for try await name in try await connection.query("""
                        SELECT name FROM config_object WHERE kind = \(referrer.kind) AND (body::jsonb) ->> \(referrer.field) = \(write.name)
                        ORDER BY name
                        """, logger: logger).decode(String.self) {
                        users.append(.init(kind: referrer.kind, name: name))
                    }
                }
                if !users.isEmpty { reasons.append(.inUse(users)) }
            }
            for reference in write.references where reference.key == own || !inserted.contains(reference.key) {
                if try await fetch(connection, reference.key) == nil {
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
                try await connection.run("""
                    INSERT INTO config_object(kind, name, body, secret, created_at, updated_at)
                    VALUES (\(write.kind), \(write.name), \(body), \(write.sealedSecret), \(now), \(now))
                    """, logger: logger)
            case .update(let body):
                try await connection.run("""
                    UPDATE config_object SET body = \(body), secret = coalesce(\(write.sealedSecret), secret), updated_at = \(now)
                    WHERE kind = \(write.kind) AND name = \(write.name)
                    """, logger: logger)
            case .setSecret:
                try await connection.run("""
                    UPDATE config_object SET secret = \(write.sealedSecret), updated_at = \(now)
                    WHERE kind = \(write.kind) AND name = \(write.name)
                    """, logger: logger)
            case .delete:
                try await connection.run(
                    "DELETE FROM config_object WHERE kind = \(write.kind) AND name = \(write.name)", logger: logger)
            }
        }
        return failures
    }

    private func fetch(_ connection: PostgresConnection, _ key: ObjectKey) async throws -> StoredObject? {
        try await Self.objects(try await connection.query(
            "SELECT kind, name, body, secret FROM config_object WHERE kind = \(key.kind) AND name = \(key.name)",
            logger: odb.logger)).first
    }

    private static func objects(_ rows: PostgresRowSequence) async throws -> [StoredObject] {
        var objects: [StoredObject] = []
        for try await (kind, name, body, secret) in rows.decode((String, String, String, String?).self) {
            objects.append(StoredObject(kind: kind, name: name, body: body, sealedSecret: secret))
        }
        return objects
    }
}
