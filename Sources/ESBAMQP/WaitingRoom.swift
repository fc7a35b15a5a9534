import Synchronization

/// Sends no connection could take at once, oldest first. Connected owner threads with room
/// in their confirm window pull from here; a send still here at its acquire deadline fails
/// with `pool_timeout`.
final class WaitingRoom: Sendable {
    private let items = Mutex<[PendingSend]>([])
    private let waitingCount = Atomic<Int>(0)
    private let wakeups: [Wakeup]
    private let expired: @Sendable (PendingSend) -> Void

    init(wakeups: [Wakeup], expired: @escaping @Sendable (PendingSend) -> Void) {
        self.wakeups = wakeups
        self.expired = expired
    }

    /// Cheap check for owner threads.
    var isEmpty: Bool { waitingCount.load(ordering: .relaxed) == 0 }

    /// Parks sends and wakes every owner thread; each send expires at its own deadline.
    func admit(_ sends: some Collection<PendingSend>) {
        guard !sends.isEmpty else { return }
        items.withLock { $0.append(contentsOf: sends) }
        waitingCount.add(sends.count, ordering: .relaxed)
        wakeups.forEach { $0.signal() }
        for send in sends {
            let now = monotonicNanoseconds()
            let delay = send.acquireDeadline > now ? send.acquireDeadline - now : 0
            Task { [self] in
                try? await Task.sleep(for: .nanoseconds(Int64(clamping: delay)))
                if remove(send) { expired(send) }
            }
        }
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

    private func remove(_ send: PendingSend) -> Bool {
        let removed = items.withLock { items -> Bool in
            guard let index = items.firstIndex(where: { $0 === send }) else { return false }
            items.remove(at: index)
            return true
        }
        if removed { waitingCount.subtract(1, ordering: .relaxed) }
        return removed
    }
}
