import ESBConcurrency
import Synchronization

/// Sends no connection could take at once, oldest first. Connected owner threads with room
/// in their confirm window pull from here; a send still here at its acquire deadline fails
/// with `pool_timeout` (the pool's timer calls ``expire(now:)``).
final class WaitingRoom: Sendable {
    private let items = Mutex<[PendingSend]>([])
    private let waitingCount = Atomic<Int>(0)
    private let wakeups: [Wakeup]
    private let expired: @Sendable (PendingSend) -> Void
    /// Rung when a send is parked, so that the pool's timer looks at its deadline.
    let admitted = Doorbell()

    init(wakeups: [Wakeup], expired: @escaping @Sendable (PendingSend) -> Void) {
        self.wakeups = wakeups
        self.expired = expired
    }

    /// Cheap check for owner threads.
    var isEmpty: Bool { waitingCount.load(ordering: .relaxed) == 0 }

    /// Parks sends and wakes every owner thread and the pool's timer.
    func admit(_ sends: some Collection<PendingSend>) {
        guard !sends.isEmpty else { return }
        items.withLock { $0.append(contentsOf: sends) }
        waitingCount.add(sends.count, ordering: .relaxed)
        wakeups.forEach { $0.signal() }
        admitted.ring()
    }

    /// Fails the sends whose acquire deadline is past; returns the earliest deadline still
    /// waiting, if any.
    func expire(now: UInt64) -> UInt64? {
        guard !isEmpty else { return nil }
        let (late, earliest) = items.withLock { items -> ([PendingSend], UInt64?) in
            let late = items.filter { $0.acquireDeadline <= now }
            if !late.isEmpty { items.removeAll { $0.acquireDeadline <= now } }
            return (late, items.map(\.acquireDeadline).min())
        }
        if !late.isEmpty { waitingCount.subtract(late.count, ordering: .relaxed) }
        late.forEach(expired)
        return earliest
    }

    /// Up to `limit` sends, oldest first (settled ones are dropped).
    func take(_ limit: Int) -> [PendingSend] {
        guard limit > 0, !isEmpty else { return [] }
        let taken = items.withLock { items -> [PendingSend] in
            let taken = Array(items.prefix(limit))
            items.removeFirst(taken.count)
            return taken
        }
        waitingCount.subtract(taken.count, ordering: .relaxed)
        return taken.filter { !$0.isDone }
    }

    /// Everything still waiting (pool shutdown).
    func takeAll() -> [PendingSend] { take(Int.max) }
}
