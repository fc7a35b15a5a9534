import Foundation
import Synchronization

/// Which deployment units have a call in flight, kept where a crash cannot lose it: a small
/// file mapped into memory (`MAP_SHARED`) with one counter per unit. A call adds one before
/// the service starts and takes it away after; the kernel keeps the mapped page whatever ends
/// the process (a trap, kill -9, the OOM killer), so the next start reads which units were
/// running: only they count a crash, toward quarantine after three in a row. Unit names go to a sidecar file when
/// a unit first gets a slot, which happens once per unit and run.
public final class InFlightLedger: Sendable {
    /// Units beyond this many in one run are not tracked (they count no crash).
    static let capacity = 4096

    private struct Slots {
        var byUnit: [String: Int] = [:]
        var names: [String] = []
    }
    private let slots = Mutex<Slots>(Slots())
    /// The mapped counters; written only under `slots`' lock.
    private nonisolated(unsafe) let counters: UnsafeMutablePointer<Int64>
    private let namesPath: String

    /// The units that had a call in flight when the previous run ended (empty after a clean stop,
    /// which leaves every counter at zero).
    public let previousRun: Set<String>

    /// Reads what the previous run left in `directory`, then starts a fresh ledger there.
    /// - Throws: `POSIXError` when the ledger file cannot be created or mapped.
    public init(directory: String) throws {
        let countersPath = directory + "/inflight.counters"
        namesPath = directory + "/inflight.units"
        previousRun = Self.read(countersPath: countersPath, namesPath: namesPath)

        let size = Self.capacity * MemoryLayout<Int64>.stride
        // Never through a link: one planted in work_dir could make the start zero another file.
        let fd = open(countersPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let memory, memory != MAP_FAILED else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        memset(memory, 0, size)
        counters = memory.bindMemory(to: Int64.self, capacity: Self.capacity)
        try? Data("[]".utf8).write(to: URL(fileURLWithPath: namesPath), options: .atomic)
    }

    /// Runs `body` counted as a call of `unit`.
    public func tracking<T>(_ unit: String, _ body: () async throws -> T) async rethrows -> T {
        let slot = enter(unit)
        defer { leave(slot) }
        return try await body()
    }

    private func enter(_ unit: String) -> Int? {
        slots.withLock { slots in
            let slot: Int
            if let known = slots.byUnit[unit] {
                slot = known
            } else {
                guard slots.names.count < Self.capacity else { return nil }
                slot = slots.names.count
                slots.names.append(unit)
                slots.byUnit[unit] = slot
                // Once per unit and run: the name must be on disk before a crash can need it.
                if let data = try? JSONEncoder().encode(slots.names) {
                    try? data.write(to: URL(fileURLWithPath: namesPath), options: .atomic)
                }
            }
            counters[slot] += 1
            return slot
        }
    }

    private func leave(_ slot: Int?) {
        guard let slot else { return }
        slots.withLock { _ in counters[slot] -= 1 }
    }

    /// The units with a non-zero counter in a ledger left by an earlier run.
    static func read(countersPath: String, namesPath: String) -> Set<String> {
        guard let counts = FileManager.default.contents(atPath: countersPath),
              let namesData = FileManager.default.contents(atPath: namesPath),
              let names = try? JSONDecoder().decode([String].self, from: namesData) else { return [] }
        var units: Set<String> = []
        counts.withUnsafeBytes { raw in
            for (slot, name) in names.enumerated() where (slot + 1) * 8 <= raw.count {
                if raw.loadUnaligned(fromByteOffset: slot * 8, as: Int64.self) != 0 { units.insert(name) }
            }
        }
        return units
    }
}
