import ESBConfig
import ESBStore
import Foundation
import Logging
import Synchronization

/// Named configuration objects of every kind in one ODB table: the body as JSON, the secret
/// sealed with the `[crypto]` key in its own column, never returned.
///
/// Validation is complete before anything is written: types, allowed values, required
/// fields, references to other objects; a delete of an object others refer to is refused
/// naming them. Checks against other rows are conditions of the write, in its transaction
/// (``ObjectRecords``). Observers hear about every committed change (to rebuild routes or
/// pools).
public final class ObjectStore: Sendable {
    let records: any ObjectRecords
    let secrets: SecretBox
    let kinds: [String: ObjectKind]
    private let observers = Mutex<[@Sendable (String) async -> Void]>([])

    /// The objects of `odb` as server `server` (its `[main] name`) changes them.
    public init(odb: ODB, secrets: SecretBox, kinds: [ObjectKind], server: String = "") {
        switch odb.connection {
        case .sqlite(let pool): records = SQLiteObjectRecords(pool: pool)
        case .postgresql(let postgres): records = PostgresObjectRecords(odb: postgres, server: server)
        }
        self.secrets = secrets
        self.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.name, $0) })
    }

    /// The objects' table.
    public static let table = ODBMigration(
        "v3-config-objects", sqlite: SQLiteObjectRecords.createTable, postgresql: PostgresObjectRecords.createTable)

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
        try await records.list(kind: kind.name).map(Self.decode)
    }

    /// Every object of a kind with its stored body (the JSON its writes compare against).
    func listStored(_ kind: ObjectKind) async throws -> [(fields: ObjectFields, body: String)] {
        try await records.list(kind: kind.name).map { (try Self.decode($0), $0.body) }
    }

    /// One object, without its secret.
    public func get(_ kind: ObjectKind, _ name: String) async throws -> ObjectFields {
        guard let object = try await records.get(kind: kind.name, name: name) else { throw Self.notFound(kind, name) }
        return try Self.decode(object)
    }

    /// The decrypted secret of an object, for the server's own use (never for API output).
    public func secret(_ kind: ObjectKind, _ name: String) async throws -> String? {
        try await records.get(kind: kind.name, name: name)?.sealedSecret.map { try secrets.open($0) }
    }

    /// The first object whose stored secret the `[crypto]` key cannot open, if any: a server
    /// started with another key than the one that sealed them (§12: one key per cluster).
    public func secretTheKeyCannotOpen() async throws -> (kind: String, name: String)? {
        for kind in kinds.keys.sorted() {
            for object in try await records.list(kind: kind) {
                guard let sealed = object.sealedSecret else { continue }
                do {
                    _ = try secrets.open(sealed)
                } catch {
                    return (kind, object.name)
                }
            }
        }
        return nil
    }

    /// Every object of a kind with its decrypted secret, for building runtime state.
    public func listWithSecrets(_ kind: ObjectKind) async throws -> [(fields: ObjectFields, secret: String?)] {
        try await records.list(kind: kind.name).map { (try Self.decode($0), try $0.sealedSecret.map { try secrets.open($0) }) }
    }

    /// Creates an object; `input` may carry the kind's secret field.
    public func create(_ kind: ObjectKind, _ input: ObjectFields) async throws -> ObjectFields {
        var fields = input
        let secret = try Self.takeSecret(kind, &fields)
        let sealed = try secret.map { try secrets.seal($0) }
        let own = ObjectKey(kind: kind.name, name: fields["name"]?.string ?? "")
        let input = fields
        let keys = Self.namedObjects(kind, input).union([own])
        let created = try await transact(kind, own.name, reading: keys) { objects in
            let (normalized, references) = try Self.normalize(kind, input, existing: nil, exists: Self.lookup(keys, objects))
            if objects[own] != nil { throw Self.duplicate(kind, own.name) }
            let write = ObjectWrite(action: .insert(body: try Self.encode(normalized)), kind: kind.name, name: own.name,
                                    sealedSecret: sealed, references: references)
            return ([write], normalized)
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
        let own = ObjectKey(kind: kind.name, name: name), changes = fields
        let keys = Self.namedObjects(kind, changes).union([own])
        let updated = try await transact(kind, name, reading: keys) { objects in
            guard let stored = objects[own] else { throw Self.notFound(kind, name) }
            let existing = try Self.decode(stored)
            let (normalized, references) = try Self.normalize(kind, existing.merging(changes) { $1 }, existing: existing,
                                                              exists: Self.lookup(keys, objects))
            let write = ObjectWrite(action: .update(body: try Self.encode(normalized)), kind: kind.name, name: name,
                                    sealedSecret: sealed, references: references)
            return ([write], normalized)
        }
        await notify(kind)
        return updated
    }

    /// Replaces the secret (password change).
    public func setSecret(_ kind: ObjectKind, _ name: String, _ secret: String) async throws {
        let sealed = try secrets.seal(secret)
        try await transact(kind, name, reading: []) { _ in
            ([ObjectWrite(action: .setSecret, kind: kind.name, name: name, sealedSecret: sealed)], ())
        }
        await notify(kind)
    }

    /// Deletes an object nothing refers to.
    public func delete(_ kind: ObjectKind, _ name: String) async throws {
        let referrers = kinds.values.sorted { $0.name < $1.name }.flatMap { other in
            other.fields.filter { $0.references == kind.name }.map { ReferringField(kind: other.name, field: $0.name) }
        }
        try await transact(kind, name, reading: []) { _ in
            ([ObjectWrite(action: .delete(referrers: referrers), kind: kind.name, name: name)], ())
        }
        await notify(kind)
    }

    func notify(_ kind: ObjectKind) async {
        await notify(named: kind.name)
    }

    private func notify(named kind: String) async {
        for observer in observers.withLock({ $0 }) { await observer(kind) }
    }

    /// Applies other servers' changes here until the task is cancelled: observers hear of
    /// each changed kind as they hear of this server's own changes (within a second or so
    /// of the commit). On SQLite (one server) it returns at once.
    public func followOtherServers(logger: Logger) async {
        await records.followOtherServers(logger: logger) { [self] kinds in
            for kind in (kinds ?? Set(self.kinds.keys)).sorted() where self.kinds[kind] != nil {
                await notify(named: kind)
            }
        }
    }

    static func duplicate(_ kind: ObjectKind, _ name: String) -> ObjectError {
        ObjectError(.duplicate, "\(kind.label) '\(name)' already exists", field: "name")
    }

    static func notFound(_ kind: ObjectKind, _ name: String) -> ObjectError {
        ObjectError(.notFound, "no \(kind.label) named '\(name)'")
    }

    /// One transaction about the object `kind`/`name`; a failed condition is the caller's
    /// error, named.
    private func transact<T: Sendable>(
        _ kind: ObjectKind, _ name: String, reading keys: Set<ObjectKey>,
        _ plan: @escaping @Sendable ([ObjectKey: StoredObject]) throws -> (writes: [ObjectWrite], value: T)
    ) async throws -> T {
        do {
            return try await records.transact(reading: keys, plan)
        } catch let refused as ObjectWritesRefused {
            throw error(for: refused.failures[0].reason, kind: kind, name: name)
        }
    }

    /// What a failed condition means to the caller of one write.
    func error(for reason: ObjectWriteFailure.Reason, kind: ObjectKind, name: String) -> ObjectError {
        let label = "\(kind.label) '\(name)'"
        switch reason {
        case .exists:
            return Self.duplicate(kind, name)
        case .notFound:
            return Self.notFound(kind, name)
        case .missingReference(let reference):
            return Self.missingReference(label, reference)
        case .inUse(let users):
            let named = users.map { "\(kinds[$0.kind]?.label ?? $0.kind) '\($0.name)'" }
            return ObjectError(.inUse, "\(label) is in use by \(named.joined(separator: ", "))")
        }
    }

    static func missingReference(_ label: String, _ reference: ObjectReference) -> ObjectError {
        ObjectError(.invalid, "\(label): \(reference.field) refers to '\(reference.name)', which does not exist (\(reference.kind))",
                    field: reference.field)
    }

    // MARK: Validation and encoding

    static func takeSecret(_ kind: ObjectKind, _ fields: inout ObjectFields) throws -> String? {
        guard let secretField = kind.secretField, let value = fields.removeValue(forKey: secretField) else { return nil }
        guard let text = value.string, !text.isEmpty else {
            throw ObjectError(.invalid, "\(kind.label): \(secretField) must be a non-empty string", field: secretField)
        }
        return text
    }

    /// The objects `fields` names in its reference fields: what a transaction reads so that
    /// ``normalize(_:_:existing:exists:pending:)`` can check them in field order.
    static func namedObjects(_ kind: ObjectKind, _ fields: ObjectFields) -> Set<ObjectKey> {
        Set(kind.fields.compactMap { field in
            guard let target = field.references, let name = fields[field.name]?.string, name != "none" else { return nil }
            return ObjectKey(kind: target, name: name)
        })
    }

    /// Checks `input` (merged over `existing` for an edit) against the kind and returns the
    /// complete object with the objects it refers to. A referenced object must exist, as
    /// `exists` says (`nil`: not read, left to the write's condition), or be in `pending`
    /// (`kind/name` of objects created in the same transaction, as an enmasse import does).
    static func normalize(_ kind: ObjectKind, _ input: ObjectFields, existing: ObjectFields?,
                          exists: (ObjectKey) -> Bool?,
                          pending: Set<String> = []) throws -> (fields: ObjectFields, references: [ObjectReference]) {
        let label = "\(kind.label) '\(input["name"]?.string ?? "?")'"
        guard let name = input["name"]?.string, !name.isEmpty, name.count <= 200, !name.contains("/") else {
            throw ObjectError(.invalid, "\(kind.label): name must be a non-empty string of at most 200 characters without '/'", field: "name")
        }
        for key in input.keys where key != "name" && kind.field(key) == nil {
            let known = (["name"] + kind.fields.map(\.name) + (kind.secretField.map { [$0] } ?? [])).joined(separator: ", ")
            throw ObjectError(.invalid, "\(label): unknown field '\(key)'; known fields: \(known)", field: key)
        }
        var result: ObjectFields = ["name": .string(name)]
        var references: [ObjectReference] = []
        for field in kind.fields {
            let given = input[field.name].map { value in field.coerce.map { $0(value) } ?? value }
            guard let value = given ?? existing?[field.name] ?? field.defaultValue else {
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
            if let target = field.references, let referenced = value.string, referenced != "none" {
                let reference = ObjectReference(field: field.name, kind: target, name: referenced)
                if exists(reference.key) == false && !pending.contains(target + "/" + referenced) {
                    throw missingReference(label, reference)
                }
                references.append(reference)
            }
            result[field.name] = value
        }
        if let problem = kind.validate?(result) {
            throw ObjectError(.invalid, "\(label): \(problem.field) \(problem.reason)", field: problem.field)
        }
        return (result, references)
    }

    /// Whether an object exists, among those a transaction read (`keys`); `nil` for others.
    static func lookup(_ keys: Set<ObjectKey>, _ objects: [ObjectKey: StoredObject]) -> (ObjectKey) -> Bool? {
        { key in keys.contains(key) ? objects[key] != nil : nil }
    }

    static func decode(_ object: StoredObject) throws -> ObjectFields {
        var fields = try JSONDecoder().decode(ObjectFields.self, from: Data(object.body.utf8))
        fields["name"] = .string(object.name)
        return fields
    }

    static func encode(_ fields: ObjectFields) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(fields), as: UTF8.self)
    }
}
