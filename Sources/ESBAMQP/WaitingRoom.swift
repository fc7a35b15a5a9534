import ESBConcurrency
import Synchronization

/// Sends no connection could take at once, oldest first. Connected owner threads with room
/// in their confirm window pull from here; a send still here at its acquire deadline fails
/// with `pool_timeout` (the pool's timer calls ``expire(now:)``).
final class WaitingRoom: Sendable {
    private struct Room {
        var sends: [PendingSend] = []
        /// Set by the pool's shutdown: a send arriving later fails with `closed` at once (its
        /// caller tries the pool that replaced this one), so nothing waits where no timer looks.
        var closed = false
        /// When the pool's timer looks next (monotonic nanoseconds), as its last look set it
        /// under this lock; 0 before its first.
        var timerLooksAt: UInt64 = 0
    }

    private let items = Mutex(Room())
    private let waitingCount = Atomic<Int>(0)
    private let wakeups: [Wakeup]
    private let expired: @Sendable (PendingSend) -> Void
    private let refused: @Sendable (PendingSend) -> Void
    /// Rung when a send is parked with a deadline earlier than the pool's timer will look,
    /// so that the timer fails it on time. With the usual acquire timeouts (longer than the
    /// timer's 200 ms period) that never happens: waking the timer for every send would cost
    /// the hot path a task switch each.
    let admitted = Doorbell()

    init(wakeups: [Wakeup], expired: @escaping @Sendable (PendingSend) -> Void,
         refused: @escaping @Sendable (PendingSend) -> Void) {
        self.wakeups = wakeups
        self.expired = expired
        self.refused = refused
    }

    /// Cheap check for owner threads.
    var isEmpty: Bool { waitingCount.load(ordering: .relaxed) == 0 }

    /// Parks sends and wakes every owner thread (and the pool's timer when it would look
    /// too late for one of them); once the room is closed, refuses them.
    func admit(_ sends: some Collection<PendingSend>) {
        guard !sends.isEmpty else { return }
        let earliest = sends.lazy.map(\.acquireDeadline).min() ?? .max
        let outcome = items.withLock { room -> (admitted: Bool, ringTimer: Bool) in
            guard !room.closed else { return (false, false) }
            room.sends.append(contentsOf: sends)
            return (true, earliest < room.timerLooksAt)
        }
        guard outcome.admitted else {
            sends.forEach(refused)
            return
        }
        waitingCount.add(sends.count, ordering: .relaxed)
        wakeups.forEach { $0.signal() }
        if outcome.ringTimer { admitted.ring() }
    }

    /// Fails the sends whose acquire deadline is past; returns when the timer must look
    /// again: the earliest deadline still waiting, or `nextLook` if that is sooner. Parks
    /// that come later ring the timer when their deadline is before it.
    func expire(now: UInt64, nextLook: UInt64) -> UInt64 {
        let (late, looksAt) = items.withLock { room -> ([PendingSend], UInt64) in
            let late = room.sends.filter { $0.acquireDeadline <= now }
            if !late.isEmpty { room.sends.removeAll { $0.acquireDeadline <= now } }
            room.timerLooksAt = min(nextLook, room.sends.map(\.acquireDeadline).min() ?? nextLook)
            return (late, room.timerLooksAt)
        }
        if !late.isEmpty { waitingCount.subtract(late.count, ordering: .relaxed) }
        late.forEach(expired)
        return looksAt
    }

    /// Up to `limit` sends, oldest first (settled ones are dropped).
    func take(_ limit: Int) -> [PendingSend] {
        guard limit > 0, !isEmpty else { return [] }
        let taken = items.withLock { room -> [PendingSend] in
            let taken = Array(room.sends.prefix(limit))
            room.sends.removeFirst(taken.count)
            return taken
        }
        waitingCount.subtract(taken.count, ordering: .relaxed)
        return taken.filter { !$0.isDone }
    }

    /// Closes the room and returns everything still waiting (pool shutdown).
    func close() -> [PendingSend] {
        let taken = items.withLock { room -> [PendingSend] in
            room.closed = true
            defer { room.sends.removeAll() }
            return room.sends
        }
        waitingCount.subtract(taken.count, ordering: .relaxed)
        return taken.filter { !$0.isDone }
    }
}
