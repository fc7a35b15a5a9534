import ESBConfig
import ESBStore
import Foundation
import GRDB
import Synchronization

/// Named configuration objects of every kind in one ODB table: the body as JSON, the secret
/// sealed with the `[crypto]` key in its own column, never returned.
///
/// Validation is complete before anything is written: types, allowed values, required
/// fields, references to other objects; a delete of an object others refer to is refused
/// naming them. Observers hear about every committed change (to rebuild routes or pools).
public final class ObjectStore: Sendable {
    let odb: ODB
    let secrets: SecretBox
    let kinds: [String: ObjectKind]
    private let observers = Mutex<[@Sendable (String) async -> Void]>([])

    public init(odb: ODB, secrets: SecretBox, kinds: [ObjectKind]) {
        self.odb = odb
        self.secrets = secrets
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.name, $0) })
    }

    /// The objects' table.
    public static let table = ODBMigration("v3-config-objects") { db in
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

    /// Calls `observer` with the kind's name after each committed change; the change's caller
    /// waits for it, so whoever made a change sees it live when the call returns.
    public func observe(_ observer: @escaping @Sendable (String) async -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Calls `observer` after each committed change to any of `kinds` (a live part rebuilding
    /// itself from them).
    public func observe(_ kinds: [ObjectKind], _ observer: @escaping @Sendable () async -> Void) {
        let names = Set(kinds.map(\.name))
        observe { kind in if names.contains(kind) { await observer() } }
    }

    public func kind(_ name: String) throws(ObjectError) -> ObjectKind {
        guard let kind = kinds[name] else { throw ObjectError(.notFound, "no object kind '\(name)'") }
        return kind
    }

    /// Every object of a kind, sorted by name, without secrets.
    public func list(_ kind: ObjectKind) async throws -> [ObjectFields] {
        try await odb.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, body FROM config_object WHERE kind = ? ORDER BY name", arguments: [kind.name])
                .map { try Self.decode($0) }
        }
    }

    /// One object, without its secret.
    public func get(_ kind: ObjectKind, _ name: String) async throws -> ObjectFields {
        try await odb.pool.read { db in try Self.fetch(db, kind, name) }
    }

    /// The decrypted secret of an object, for the server's own use (never for API output).
    public func secret(_ kind: ObjectKind, _ name: String) async throws -> String? {
        let sealed = try await odb.pool.read { db in
            try String.fetchOne(db, sql: "SELECT secret FROM config_object WHERE kind = ? AND name = ?", arguments: [kind.name, name])
        }
        return try sealed.map { try secrets.open($0) }
    }

    /// Every object of a kind with its decrypted secret, for building runtime state.
    public func listWithSecrets(_ kind: ObjectKind) async throws -> [(fields: ObjectFields, secret: String?)] {
        let rows = try await odb.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, body, secret FROM config_object WHERE kind = ? ORDER BY name", arguments: [kind.name])
                .map { (try Self.decode($0), $0["secret"] as String?) }
        }
        return try rows.map { ($0.0, try $0.1.map { try secrets.open($0) }) }
    }

    /// Creates an object; `input` may carry the kind's secret field.
    public func create(_ kind: ObjectKind, _ input: ObjectFields) async throws -> ObjectFields {
        var fields = input
        let secret = try Self.takeSecret(kind, &fields)
        let sealed = try secret.map { try secrets.seal($0) }
        let input = fields
        let created = try await odb.pool.write { db in
            let normalized = try Self.normalize(db, kind, input, existing: nil)
            let name = normalized["name"]!.string!
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM config_object WHERE kind = ? AND name = ?", arguments: [kind.name, name]) == true {
                throw ObjectError(.duplicate, "\(kind.label) '\(name)' already exists", field: "name")
            }
            try db.execute(sql: "INSERT INTO config_object(kind, name, body, secret, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [kind.name, name, try Self.encode(normalized), sealed, Date(), Date()])
            return normalized
        }
        await notify(kind)
        return created
    }

    /// Changes the fields given; absent fields keep their values.
    public func update(_ kind: ObjectKind, _ name: String, _ changes: ObjectFields) async throws -> ObjectFields {
        var fields = changes
        let secret = try Self.takeSecret(kind, &fields)
        if let renamed = fields["name"], renamed != .string(name) {
            throw ObjectError(.invalid, "\(kind.label) '\(name)': renaming is not supported; create a new one", field: "name")
        }
        let sealed = try secret.map { try secrets.seal($0) }
        let changes = fields
        let updated = try await odb.pool.write { db in
            let existing = try Self.fetch(db, kind, name)
            let normalized = try Self.normalize(db, kind, existing.merging(changes) { $1 }, existing: existing)
            try db.execute(sql: "UPDATE config_object SET body = ?, updated_at = ? WHERE kind = ? AND name = ?",
                           arguments: [try Self.encode(normalized), Date(), kind.name, name])
            if let sealed {
                try db.execute(sql: "UPDATE config_object SET secret = ? WHERE kind = ? AND name = ?", arguments: [sealed, kind.name, name])
            }
            return normalized
        }
        await notify(kind)
        return updated
    }

    /// Replaces the secret (password change).
    public func setSecret(_ kind: ObjectKind, _ name: String, _ secret: String) async throws {
        let sealed = try secrets.seal(secret)
        try await odb.pool.write { db in
            _ = try Self.fetch(db, kind, name)
            try db.execute(sql: "UPDATE config_object SET secret = ?, updated_at = ? WHERE kind = ? AND name = ?",
                           arguments: [sealed, Date(), kind.name, name])
        }
        await notify(kind)
    }

    /// Deletes an object nothing refers to.
    public func delete(_ kind: ObjectKind, _ name: String) async throws {
        let referring = kinds.values.flatMap { other in other.fields.filter { $0.references == kind.name }.map { (other, $0) } }
        try await odb.pool.write { db in
            _ = try Self.fetch(db, kind, name)
            var users: [String] = []
            for (other, field) in referring {
                users += try String.fetchAll(db, sql: "SELECT name FROM config_object WHERE kind = ? AND json_extract(body, ?) = ? ORDER BY name",
                                             arguments: [other.name, "$.\(field.name)", name]).map { "\(other.label) '\($0)'" }
            }
            guard users.isEmpty else {
                throw ObjectError(.inUse, "\(kind.label) '\(name)' is in use by \(users.joined(separator: ", "))")
            }
            try db.execute(sql: "DELETE FROM config_object WHERE kind = ? AND name = ?", arguments: [kind.name, name])
        }
        await notify(kind)
    }

    func notify(_ kind: ObjectKind) async {
        for observer in observers.withLock({ $0 }) { await observer(kind.name) }
    }

    // MARK: Validation and encoding

    static func takeSecret(_ kind: ObjectKind, _ fields: inout ObjectFields) throws -> String? {
        guard let secretField = kind.secretField, let value = fields.removeValue(forKey: secretField) else { return nil }
        guard let text = value.string, !text.isEmpty else {
            throw ObjectError(.invalid, "\(kind.label): \(secretField) must be a non-empty string", field: secretField)
        }
        return text
    }

    /// Checks `input` (merged over `existing` for an edit) against the kind and returns the
    /// complete object. A reference resolves to an object in the ODB or to one in `pending`
    /// (`kind/name` of objects created in the same transaction, as an enmasse import does).
    static func normalize(_ db: Database, _ kind: ObjectKind, _ input: ObjectFields, existing: ObjectFields?,
                          pending: Set<String> = []) throws -> ObjectFields {
        let label = "\(kind.label) '\(input["name"]?.string ?? "?")'"
        guard let name = input["name"]?.string, !name.isEmpty, name.count <= 200, !name.contains("/") else {
            throw ObjectError(.invalid, "\(kind.label): name must be a non-empty string of at most 200 characters without '/'", field: "name")
        }
        for key in input.keys where key != "name" && kind.field(key) == nil {
            let known = (["name"] + kind.fields.map(\.name) + (kind.secretField.map { [$0] } ?? [])).joined(separator: ", ")
            throw ObjectError(.invalid, "\(label): unknown field '\(key)'; known fields: \(known)", field: key)
        }
        var result: ObjectFields = ["name": .string(name)]
        for field in kind.fields {
            guard let value = input[field.name] ?? existing?[field.name] ?? field.defaultValue else {
                throw ObjectError(.invalid, "\(label): \(field.name) is required", field: field.name)
            }
            let typeMatches: Bool = switch (field.type, value) {
            case (.string, .string), (.int, .int), (.bool, .bool), (.string, .null): true
            case (_, .null): field.defaultValue == .null
            default: false
            }
            guard typeMatches else {
                throw ObjectError(.invalid, "\(label): \(field.name) = \(value) must be a \(field.type)", field: field.name)
            }
            if let reason = value == .null && field.defaultValue == .null ? nil : field.check?(value) {
                throw ObjectError(.invalid, "\(label): \(field.name) = \(value) \(reason)", field: field.name)
            }
            if let target = field.references, let referenced = value.string, referenced != "none",
               !pending.contains(target + "/" + referenced) {
                let exists = try Bool.fetchOne(db, sql: "SELECT 1 FROM config_object WHERE kind = ? AND name = ?",
                                               arguments: [target, referenced]) ?? false
                guard exists else {
                    throw ObjectError(.invalid, "\(label): \(field.name) refers to '\(referenced)', which does not exist (\(target))", field: field.name)
                }
            }
            result[field.name] = value
        }
        return result
    }

    static func fetch(_ db: Database, _ kind: ObjectKind, _ name: String) throws -> ObjectFields {
        guard let row = try Row.fetchOne(db, sql: "SELECT name, body FROM config_object WHERE kind = ? AND name = ?",
                                         arguments: [kind.name, name]) else {
            throw ObjectError(.notFound, "no \(kind.label) named '\(name)'")
        }
        return try decode(row)
    }

    private static func decode(_ row: Row) throws -> ObjectFields {
        var fields = try JSONDecoder().decode(ObjectFields.self, from: Data((row["body"] as String).utf8))
        fields["name"] = .string(row["name"])
        return fields
    }

    static func encode(_ fields: ObjectFields) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(fields), as: UTF8.self)
    }
}
