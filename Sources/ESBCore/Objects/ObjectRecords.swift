import Logging
/// What ``ObjectStore`` needs from the ODB, whatever the engine: the `config_object` rows and
/// one transaction that reads some objects, decides, and writes. Each engine implements it
/// once (``SQLiteObjectRecords``, ``PostgresObjectRecords``); validation, secrets and observers stay in the store above,
/// written once, as the pure `plan` a transaction runs.
///
/// A check against other rows is made inside the transaction that writes: on the objects the
/// plan was handed (read in the transaction, locked where the engine locks rows), and again
/// as the conditions each ``ObjectWrite`` carries (a name taken, a referenced object gone, an
/// object in use). Two callers, or two servers on one ODB, cannot slip between a check and a
/// write, and no edit is lost to another. An engine keeps that promise its own way: SQLite
/// runs one write transaction at a time; an engine with concurrent writers must lock what it
/// reads (`SELECT … FOR UPDATE`) and the rows a condition looks for, or run serializable and
/// retry.
protocol ObjectRecords: Sendable {
    /// Every object of `kind`, sorted by name.
    func list(kind: String) async throws -> [StoredObject]
    /// The object `kind`/`name`, if it exists.
    func get(kind: String, name: String) async throws -> StoredObject?
    /// In one transaction: reads the objects `keys` name, hands those that exist to `plan`
    /// (pure work: no I/O, no waiting), then applies the writes it returns, in order, each
    /// under its conditions. Returns the plan's value.
    /// - Throws: what `plan` threw, or ``ObjectWritesRefused`` with every failed condition;
    ///   either way nothing was written.
    func transact<T: Sendable>(
        reading keys: Set<ObjectKey>,
        _ plan: @escaping @Sendable ([ObjectKey: StoredObject]) throws -> (writes: [ObjectWrite], value: T)
    ) async throws -> T
    /// Hears the kinds other servers sharing the ODB changed, until the task is cancelled;
    /// `nil` when changes may have been missed (every kind should be read again). Returns
    /// at once where no other server can write (SQLite).
    func followOtherServers(logger: Logger, changed: @escaping @Sendable (Set<String>?) async -> Void) async
}

/// Names one object.
struct ObjectKey: Sendable, Hashable {
    var kind: String
    var name: String
}

/// An object as the ODB holds it.
struct StoredObject: Sendable, Equatable {
    var kind: String
    var name: String
    /// The fields as JSON with sorted keys.
    var body: String
    /// The secret, sealed with the `[crypto]` key.
    var sealedSecret: String?
}

/// An object names another in one of its fields: the other must exist.
struct ObjectReference: Sendable, Hashable {
    var field: String
    var kind: String
    var name: String

    var key: ObjectKey { ObjectKey(kind: kind, name: name) }
}

/// A field of some kind that names objects of another (who may refer to an object).
struct ReferringField: Sendable, Hashable {
    var kind: String
    var field: String
}

/// One change of a transaction, with the conditions it needs.
struct ObjectWrite: Sendable {
    enum Action: Sendable {
        /// A new object with `body` (the fields as JSON with sorted keys); fails
        /// ``ObjectWriteFailure/Reason/exists`` when the name is taken.
        case insert(body: String)
        /// A new body for an existing object; the secret changes only when one is given.
        case update(body: String)
        /// Only the secret.
        case setSecret
        /// Fails ``ObjectWriteFailure/Reason/inUse`` while any object names it in one of
        /// `referrers`.
        case delete(referrers: [ReferringField])
    }

    var action: Action
    var kind: String
    var name: String
    /// The sealed secret to store (insert, update, setSecret); none keeps the stored one.
    var sealedSecret: String? = nil
    /// Objects the new body names; each must exist in the ODB or be inserted by the same
    /// transaction (an object may not name itself that way).
    var references: [ObjectReference] = []
}

/// Why one write of a transaction cannot apply.
struct ObjectWriteFailure: Sendable, Equatable {
    enum Reason: Sendable, Equatable {
        case exists
        case notFound
        case missingReference(ObjectReference)
        /// The objects naming it, in the order of the referrers given, each by name.
        case inUse([ObjectKey])
    }

    /// The write's position in the transaction.
    var index: Int
    var reason: Reason
}

/// A transaction's writes did not all meet their conditions; nothing was written.
struct ObjectWritesRefused: Error, Sendable {
    var failures: [ObjectWriteFailure]
}
