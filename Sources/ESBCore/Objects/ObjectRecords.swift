/// What ``ObjectStore`` needs from the ODB, whatever the engine: the `config_object` rows and
/// one atomic batch of changes. Each engine implements it once (``SQLiteObjectRecords``);
/// validation, secrets and observers stay in the store above, written once.
///
/// Checks that depend on other rows (a name taken, a referenced object gone, an object in
/// use, a body changed since it was read) are conditions of the batch, evaluated in the same
/// transaction as its writes, so two servers or two callers cannot slip between a check
/// and a write.
protocol ObjectRecords: Sendable {
    /// Every object of `kind`, sorted by name.
    func list(kind: String) async throws -> [StoredObject]
    /// The object `kind`/`name`, if it exists.
    func get(kind: String, name: String) async throws -> StoredObject?
    /// Applies `writes` in order in one transaction when every condition holds. Otherwise
    /// writes nothing and returns every failure, in the order of `writes`.
    func apply(_ writes: [ObjectWrite]) async throws -> [ObjectWriteFailure]
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
}

/// A field of some kind that names objects of another (who may refer to an object).
struct ReferringField: Sendable, Hashable {
    var kind: String
    var field: String
}

/// One change of an atomic batch, with the conditions it needs.
struct ObjectWrite: Sendable {
    enum Action: Sendable {
        /// A new object; fails ``ObjectWriteFailure/Reason/exists`` when the name is taken.
        case insert
        /// A new body for an object whose body is still `expectedBody` (what the caller read
        /// and merged into); fails ``ObjectWriteFailure/Reason/changed`` otherwise. The secret
        /// changes only when one is given.
        case update(expectedBody: String)
        /// Only the secret.
        case setSecret
        /// Fails ``ObjectWriteFailure/Reason/inUse`` while any object names it in one of
        /// `referrers`.
        case delete(referrers: [ReferringField])
    }

    var action: Action
    var kind: String
    var name: String
    /// The new body (insert, update).
    var body: String? = nil
    var sealedSecret: String? = nil
    /// Objects the new body names; each must exist in the ODB or be inserted by the batch.
    var references: [ObjectReference] = []
}

/// Why one write of a batch cannot apply.
struct ObjectWriteFailure: Sendable, Equatable {
    enum Reason: Sendable, Equatable {
        case exists
        case notFound
        /// The body is no longer the one the caller read.
        case changed
        case missingReference(ObjectReference)
        /// The objects naming it, each as (kind, name), in the order of the referrers given.
        case inUse([ReferringObject])
    }

    struct ReferringObject: Sendable, Equatable {
        var kind: String
        var name: String
    }

    /// The write's position in the batch.
    var index: Int
    var reason: Reason
}
