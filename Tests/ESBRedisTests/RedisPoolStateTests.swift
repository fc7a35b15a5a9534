@testable import ESBRedis
import Testing

/// The Redis pool's bookkeeping, without Redis: connections are numbers, time is a number.
@Suite struct RedisPoolStateTests {
    typealias Pool = RedisPoolState<Int>
    static let down = RedisError(.unavailable, "kvdb 127.0.0.1:1: cannot connect")

    static func connection(_ borrow: Pool.Borrow) -> Int? {
        if case .granted(.connection(let connection, _)) = borrow { return connection }
        return nil
    }

    static func isOpen(_ borrow: Pool.Borrow) -> Bool {
        if case .granted(.open) = borrow { return true }
        return false
    }

    @Test func opensUpToTheSizeThenLendsTheMostRecentlyReturnedFirst() {
        var pool = Pool(size: 2, retryInterval: 100)
        #expect(Self.isOpen(pool.borrow(now: 0, waiter: nil)))
        pool.opened()
        #expect(Self.isOpen(pool.borrow(now: 0, waiter: nil)))
        pool.opened()
        guard case .busy = pool.borrow(now: 0, waiter: nil) else { Issue.record("a third borrower got something"); return }
        #expect(pool.waiters.isEmpty, "a borrower that cannot wait is not queued")
        guard case .pooled = pool.giveBack(1, now: 10), case .pooled = pool.giveBack(2, now: 20) else { Issue.record("not pooled"); return }
        #expect(Self.connection(pool.borrow(now: 30, waiter: nil)) == 2)
        #expect(Self.connection(pool.borrow(now: 30, waiter: nil)) == 1)
        #expect(pool.open == 2)
    }

    @Test func waitersAreHandedConnectionsFirstComeFirstServedAndBeforeNewBorrowers() {
        var pool = Pool(size: 1, retryInterval: 100)
        _ = pool.borrow(now: 0, waiter: nil)
        pool.opened()
        guard case .busy = pool.borrow(now: 0, waiter: 7), case .busy = pool.borrow(now: 0, waiter: 3) else {
            Issue.record("not busy"); return
        }
        #expect(pool.waiters == [7, 3])
        guard case .handOver(.connection(1, _), to: 7) = pool.giveBack(1, now: 5) else { Issue.record("not handed to 7"); return }
        guard case .busy = pool.borrow(now: 6, waiter: nil) else { Issue.record("a newcomer overtook waiter 3"); return }
        guard case .handOver(.connection(1, _), to: 3) = pool.giveBack(1, now: 7) else { Issue.record("not handed to 3"); return }
        guard case .pooled = pool.giveBack(1, now: 8) else { Issue.record("not pooled"); return }
        #expect(Self.connection(pool.borrow(now: 9, waiter: nil)) == 1)
    }

    @Test func aDroppedConnectionMakesRoomForAWaiterToOpenOne() {
        var pool = Pool(size: 1, retryInterval: 100)
        _ = pool.borrow(now: 0, waiter: nil)
        pool.opened()
        _ = pool.borrow(now: 0, waiter: 4)
        guard case .handOver(.open, to: 4) = pool.giveBack(nil, now: 1) else { Issue.record("the waiter may not open"); return }
        #expect(pool.open == 1)
    }

    @Test func aFailedConnectHoldsNewAttemptsBackForTheRetryIntervalAndFailsTheWaiters() {
        var pool = Pool(size: 2, retryInterval: 100)
        #expect(Self.isOpen(pool.borrow(now: 0, waiter: nil)))
        #expect(Self.isOpen(pool.borrow(now: 0, waiter: nil)))
        _ = pool.borrow(now: 0, waiter: 1)
        #expect(pool.openFailed(Self.down, now: 10).isEmpty, "another connect is still under way")
        #expect(pool.openFailed(Self.down, now: 11) == [1], "no connection left to hand the waiter")
        #expect(pool.waiters.isEmpty)
        guard case .granted(.failed(let error)) = pool.borrow(now: 50, waiter: nil) else { Issue.record("not failed fast"); return }
        #expect(error == Self.down)
        #expect(pool.lastFailure == Self.down)
        #expect(Self.isOpen(pool.borrow(now: 111, waiter: nil)), "after the interval, one attempt")
        pool.opened()
        #expect(pool.retryAt == 0)
    }

    @Test func whileConnectsFailBusyConnectionsAreWaitedForNotFailed() {
        var pool = Pool(size: 2, retryInterval: 100)
        _ = pool.borrow(now: 0, waiter: nil)
        pool.opened()
        _ = pool.borrow(now: 0, waiter: nil)
        _ = pool.openFailed(Self.down, now: 1)
        guard case .busy = pool.borrow(now: 2, waiter: 0) else { Issue.record("one connection is open: wait for it"); return }
        guard case .handOver(.failed, to: 0) = pool.giveBack(nil, now: 3) else {
            Issue.record("the last connection dropped within the interval: the waiter fails"); return
        }
        #expect(pool.open == 0)
    }

    @Test func idleConnectionsUnusedSinceTheCutoffAreTakenForAHealthCheck() {
        var pool = Pool(size: 3, retryInterval: 100)
        for _ in 0..<3 { _ = pool.borrow(now: 0, waiter: nil); pool.opened() }
        _ = pool.giveBack(1, now: 10)
        _ = pool.giveBack(2, now: 20)
        _ = pool.giveBack(3, now: 30)
        #expect(pool.takeIdle(before: 25) == 1, "the least recently used first")
        #expect(pool.takeIdle(before: 25) == 2)
        #expect(pool.takeIdle(before: 25) == nil, "3 was used since")
        #expect(pool.open == 3, "checked connections still count")
        #expect(Self.connection(pool.borrow(now: 40, waiter: nil)) == 3)
        _ = pool.giveBack(nil, now: 41)  // 1 failed its PING
        #expect(pool.open == 2)
    }

    @Test func closingFreesIdleConnectionsNowAndLentOnesWhenTheyComeBack() {
        var pool = Pool(size: 2, retryInterval: 100)
        for _ in 0..<2 { _ = pool.borrow(now: 0, waiter: nil); pool.opened() }
        _ = pool.giveBack(1, now: 1)
        let (free, waiting) = pool.close()
        #expect(free == [1])
        #expect(waiting.isEmpty)
        guard case .granted(.closed) = pool.borrow(now: 2, waiter: 5) else { Issue.record("lent after close"); return }
        guard case .free(2) = pool.giveBack(2, now: 3) else { Issue.record("not freed"); return }
        #expect(pool.open == 0)
    }
}
