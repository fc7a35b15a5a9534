import ESBService
import Synchronization

/// Which service names are live and which deployment unit each comes from.
///
/// Reads are one locked dictionary lookup; a redeploy swaps a unit's services in one step,
/// so no call ever sees a half-deployed unit.
public final class ServiceRegistry: Sendable {
    /// A live service.
    public struct Entry: Sendable {
        public var type: any Service.Type
        /// The deployment unit (file name) it came from; ``builtinUnit`` for built-ins.
        public var unit: String
    }

    /// The unit the server's own services belong to.
    public static let builtinUnit = "esb.builtin"

    private let entries = Mutex<[String: Entry]>([:])
    /// Services known but not loaded (their unit is quarantined), with the reason.
    private let inactive = Mutex<[String: String]>([:])

    public init() {}

    /// The live service called `name`.
    public func lookup(_ name: String) -> Entry? { entries.withLock { $0[name] } }

    /// Every live service, sorted by name.
    public func all() -> [(name: String, entry: Entry)] {
        entries.withLock { $0.map { ($0.key, $0.value) } }.sorted { $0.name < $1.name }
    }

    /// Names `types` would take that another unit already owns, with that unit.
    public func conflicts(unit: String, names: [String]) -> [(name: String, owner: String)] {
        entries.withLock { entries in
            names.compactMap { name in
                guard let owner = entries[name]?.unit, owner != unit else { return nil }
                return (name, owner)
            }
        }
    }

    /// Why `name` is known but not live, if it is.
    public func inactiveReason(_ name: String) -> String? { inactive.withLock { $0[name] } }

    /// Marks `names` (of a unit that is not loaded) inactive for `reason`.
    public func markInactive(_ names: [String], reason: String) {
        inactive.withLock { for name in names { $0[name] = reason } }
    }

    /// Makes `types` the services of `unit`, removing the unit's services that are gone, atomically.
    public func replace(unit: String, with types: [any Service.Type]) {
        entries.withLock { entries in
            entries = entries.filter { $0.value.unit != unit }
            for type in types { entries[type.name] = Entry(type: type, unit: unit) }
        }
        inactive.withLock { inactive in for type in types { inactive[type.name] = nil } }
    }
}
