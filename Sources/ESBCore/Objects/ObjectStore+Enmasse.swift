import ESBStore
import Foundation

/// Many objects at once, for enmasse: export in dependency order, import all or nothing.
extension ObjectStore {
    /// One object read from an import file.
    public struct ImportItem: Sendable {
        public var kind: ObjectKind
        /// The fields as given, perhaps with the kind's secret field.
        public var fields: ObjectFields
        /// Where it is, for messages: `file.yaml:12`.
        public var location: String

        public init(kind: ObjectKind, fields: ObjectFields, location: String) {
            self.kind = kind
            self.fields = fields
            self.location = location
        }
    }

    /// What an import changed: `kind 'name'` of each object, in file order.
    public struct ImportOutcome: Sendable, Equatable, Codable {
        public var created: [String] = []
        public var updated: [String] = []
        /// What the import left that will not work as is: basic-auth definitions without a
        /// password (a default export leaves secrets out), which refuse every request.
        public var warnings: [String] = []
    }

    /// The kinds with every kind an object refers to before the objects referring to it.
    public var kindsInDependencyOrder: [ObjectKind] {
        var ordered: [ObjectKind] = []
        func visit(_ kind: ObjectKind) {
            guard !ordered.contains(where: { $0.name == kind.name }) else { return }
            for target in kind.fields.compactMap(\.references) { if let referenced = kinds[target] { visit(referenced) } }
            ordered.append(kind)
        }
        for kind in kinds.values.sorted(by: { $0.name < $1.name }) { visit(kind) }
        return ordered
    }

    /// Every object of every kind, kinds in dependency order and objects by name; with
    /// `includeSecrets` each object carries its decrypted secret (when it has one).
    public func exportAll(includeSecrets: Bool) async throws -> [(kind: ObjectKind, objects: [ObjectFields])] {
        var groups: [(kind: ObjectKind, objects: [ObjectFields])] = []
        for kind in kindsInDependencyOrder {
            let objects = try await listWithSecrets(kind).map { item -> ObjectFields in
                var fields = item.fields
                if includeSecrets, let secretField = kind.secretField, let secret = item.secret { fields[secretField] = .string(secret) }
                return fields
            }
            if !objects.isEmpty { groups.append((kind, objects)) }
        }
        return groups
    }

    /// Checks every item, then creates them (or, with `replace`, edits existing ones in place:
    /// the fields given change, the others keep their values) in one transaction in dependency
    /// order. Nothing is deleted. Changed kinds are applied live after the commit.
    /// - Throws: ``ImportError`` listing every problem; then nothing was changed.
    public func importAll(_ items: [ImportItem], replace: Bool) async throws -> ImportOutcome {
        let order = Dictionary(uniqueKeysWithValues: kindsInDependencyOrder.enumerated().map { ($0.element.name, $0.offset) })
        let sorted = items.enumerated().sorted { (order[$0.element.kind.name] ?? 0, $0.offset) < (order[$1.element.kind.name] ?? 0, $1.offset) }
            .map(\.element)
        let pending = Set(items.compactMap { item in item.fields["name"]?.string.map { item.kind.name + "/" + $0 } })
        var problems: [ImportError.Problem] = []
        var seen: [String: String] = [:]
        var prepared: [(item: ImportItem, secret: String?)] = []
        for item in sorted {
            let name = item.fields["name"]?.string ?? "?"
            let object = "\(item.kind.name) '\(name)'"
            if let first = seen[item.kind.name + "/" + name] {
                problems.append(.init(location: item.location, object: object, field: "name",
                                      message: "duplicate name: \(object) is already defined at \(first)"))
                continue
            }
            if item.fields["name"]?.string != nil { seen[item.kind.name + "/" + name] = item.location }
            do {
                var withoutSecret = item
                let secret = try Self.takeSecret(item.kind, &withoutSecret.fields)
                prepared.append((withoutSecret, secret))
            } catch let error as ObjectError {
                problems.append(.init(location: item.location, object: object, field: error.field, message: error.message))
            }
        }
        let sealed = try prepared.map { try $0.secret.map { try secrets.seal($0) } }
        // The transaction reads every object the file names, as itself or in a reference.
        let keys = Set(prepared.flatMap { item, _ in
            Self.namedObjects(item.kind, item.fields).union([ObjectKey(kind: item.kind.name, name: item.fields["name"]?.string ?? "")])
        })
        let checked = problems, toWrite = prepared.map(\.item)
        let outcome: ImportOutcome
        do {
            outcome = try await records.transact(reading: keys) { [self] objects in
                try plan(toWrite, sealed: sealed, replace: replace, pending: pending, problems: checked,
                         exists: Self.lookup(keys, objects), objects: objects)
            }
        } catch let refused as ObjectWritesRefused {
            throw ImportError(problems: refused.failures.map { failure in
                let item = toWrite[failure.index]
                let name = item.fields["name"]?.string ?? "?"
                let error = error(for: failure.reason, kind: item.kind, name: name)
                return .init(location: item.location, object: "\(item.kind.name) '\(name)'", field: error.field, message: error.message)
            })
        }
        for kind in kindsInDependencyOrder where prepared.contains(where: { $0.item.kind.name == kind.name }) {
            await notify(kind)
        }
        return outcome
    }

    /// An import's writes, one per item in order, decided in its transaction from the objects
    /// it read.
    /// - Throws: ``ImportError`` with `problems` and every problem found here.
    private func plan(_ items: [ImportItem], sealed: [String?], replace: Bool, pending: Set<String>,
                      problems: [ImportError.Problem], exists: (ObjectKey) -> Bool?,
                      objects: [ObjectKey: StoredObject]) throws -> (writes: [ObjectWrite], value: ImportOutcome) {
        var problems = problems
        var writes: [ObjectWrite] = []
        var outcome = ImportOutcome()
        for (index, item) in items.enumerated() {
            let name = item.fields["name"]?.string ?? "?"
            let object = "\(item.kind.name) '\(name)'"
            do {
                let stored = objects[ObjectKey(kind: item.kind.name, name: name)]
                let existing = try stored.map(Self.decode)
                if existing != nil && !replace {
                    problems.append(.init(location: item.location, object: object, field: "name",
                                          message: "\(object) already exists in the ODB; import with replace to edit it in place"))
                    continue
                }
                let merged = existing.map { $0.merging(item.fields) { $1 } } ?? item.fields
                let (normalized, references) = try Self.normalize(item.kind, merged, existing: existing, exists: exists, pending: pending)
                let body = try Self.encode(normalized)
                writes.append(ObjectWrite(action: stored == nil ? .insert(body: body) : .update(body: body), kind: item.kind.name,
                                          name: name, sealedSecret: sealed[index], references: references))
                if stored == nil { outcome.created.append(object) } else { outcome.updated.append(object) }
                if item.kind.name == ObjectKinds.basicAuth.name, sealed[index] == nil, stored?.sealedSecret == nil {
                    outcome.warnings.append("\(object) has no password: channels using it refuse every request until one is set (esb security password \(name))")
                }
            } catch let error as ObjectError {
                problems.append(.init(location: item.location, object: object, field: error.field, message: error.message))
            }
        }
        guard problems.isEmpty else { throw ImportError(problems: problems) }
        return (writes, outcome)
    }
}

/// An import file with problems; nothing was imported.
public struct ImportError: Error, Sendable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, Codable, CustomStringConvertible {
        /// `file.yaml:12`.
        public var location: String
        /// `kind 'name'`, when the problem is in one object.
        public var object: String?
        public var field: String?
        public var message: String

        public init(location: String, object: String? = nil, field: String? = nil, message: String) {
            self.location = location
            self.object = object
            self.field = field
            self.message = message
        }

        /// `file.yaml:12: outconn_amqp 'orders': …`; the object is left out when the message
        /// already names it.
        public var description: String {
            var text = location + ": "
            if let object, let quoted = object.firstIndex(of: "'"), !message.contains(object[quoted...]) {
                text += object + ": "
            }
            return text + message
        }
    }

    public var problems: [Problem]

    public init(problems: [Problem]) { self.problems = problems }

    public var description: String {
        let count = problems.count == 1 ? "1 problem" : "\(problems.count) problems"
        return "enmasse import: \(count); nothing was imported:\n" + problems.map { "  " + $0.description }.joined(separator: "\n")
    }
}
