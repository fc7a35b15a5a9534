@testable import ESBAMQP
import Testing

/// The consumer's rules without a broker: deliveries are tags, time is a number (ns).
@Suite struct ConsumerStateMachineTests {
    typealias Machine = ConsumerStateMachine
    static let second: UInt64 = 1_000_000_000

    static func consuming() -> (Machine, UInt64) {
        var machine = Machine(.init(name: "test", initialBackoff: 1 * second, maximumBackoff: 4 * second))
        #expect(true == machine.startConnecting())
        let generation = machine.connected(now: 0)
        #expect(machine.status == .consuming)
        return (machine, generation)
    }

    @Test func aDeliveryIsAckedOnlyOnceItsHandlerSettledIt() {
        var (machine, generation) = Self.consuming()
        #expect(true == machine.received(7))
        #expect(machine.takeSettlements().isEmpty, "nothing to write before the handler settled")
        #expect(machine.inFlightCount == 1)
        #expect(machine.settle(generation: generation, tag: 7, outcome: .ack) == .queued(wakeOwner: false))
        #expect(machine.settle(generation: generation, tag: 7, outcome: .reject) == .stale,
                "a second settlement before the first was written is dropped: no double ack")
        #expect(machine.inFlightCount == 1, "settled, not yet written")
        #expect(machine.takeSettlements().map(\.tag) == [7])
        #expect(machine.inFlightCount == 0)
        #expect(machine.settle(generation: generation, tag: 7, outcome: .ack) == .stale, "settled once")
    }

    @Test func aSettlementForAnEndedConnectionIsDroppedAndItsDeliveriesCountedAbandoned() {
        var (machine, generation) = Self.consuming()
        #expect(true == machine.received(1) && machine.received(2))
        let ended = machine.connectionEnded("connection lost", now: 2 * Machine.Configuration(name: "", initialBackoff: 0, maximumBackoff: 0).stableAfter)
        #expect(ended.abandoned == 2 && !ended.exit)
        #expect(machine.settle(generation: generation, tag: 1, outcome: .ack) == .stale,
                "the broker redelivers it: its channel is gone")
        #expect(machine.status == .waiting)
        #expect(machine.lastError == "connection lost")
        #expect(true == machine.startConnecting())
        let next = machine.connected(now: 100 * Self.second)
        #expect(next != generation)
        #expect(true == machine.received(1), "tags start again on a new channel")
        #expect(machine.settle(generation: next, tag: 1, outcome: .reject) == .queued(wakeOwner: false))
    }

    @Test func aSleepingOwnerIsWokenBySettlements() {
        var (machine, generation) = Self.consuming()
        #expect(true == machine.received(3))
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, heartbeatSeconds: 30) != nil)
        #expect(machine.settle(generation: generation, tag: 3, outcome: .ack) == .queued(wakeOwner: true))
        machine.awake()
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, heartbeatSeconds: 30) == nil, "a settlement to write first")
    }

    @Test func aStopCancelsWaitsForInFlightThenClosesAndHandsOutNothingMore() {
        var (machine, generation) = Self.consuming()
        #expect(true == machine.received(1))
        machine.stop(deadline: nil)
        #expect(machine.status == .draining)
        #expect(machine.tick(now: 0) == .cancel)
        #expect(false == machine.received(2), "a delivery crossing the cancel is not handed out")
        #expect(machine.tick(now: 0) == .none, "in flight: wait")
        #expect(machine.settle(generation: generation, tag: 1, outcome: .ack) == .queued(wakeOwner: false))
        #expect(machine.tick(now: 0) == .none, "the ack is still to be written")
        _ = machine.takeSettlements()
        #expect(machine.tick(now: 0) == .close)
        let ended = machine.connectionEnded(nil, now: 0)
        #expect(ended.exit && ended.abandoned == 0)
        #expect(false == machine.startConnecting())
        #expect(machine.status == .stopped)
    }

    @Test func theStopDeadlineClosesWithDeliveriesStillInFlight() {
        var (machine, _) = Self.consuming()
        #expect(true == machine.received(1))
        machine.stop(deadline: 5 * Self.second)
        #expect(machine.tick(now: 1 * Self.second) == .cancel)
        #expect(machine.tick(now: 2 * Self.second) == .none)
        machine.stop(deadline: 60 * Self.second)
        #expect(machine.tick(now: 5 * Self.second) == .close, "a later deadline never extends the first")
        #expect(machine.connectionEnded(nil, now: 5 * Self.second).abandoned == 1, "left unacked for the broker")
    }

    @Test func reconnectsBackOffExponentiallyAndResetOnlyAfterAStableConnection() {
        var machine = Machine(.init(name: "test", initialBackoff: 1 * Self.second, maximumBackoff: 4 * Self.second))
        #expect(true == machine.startConnecting())
        #expect(machine.connectFailed("404 NOT_FOUND", now: 0) == 1 * Self.second)
        #expect(machine.connectFailed("404 NOT_FOUND", now: 0) == 2 * Self.second)
        #expect(machine.connectFailed("404 NOT_FOUND", now: 0) == 4 * Self.second)
        #expect(machine.connectFailed("404 NOT_FOUND", now: 0) == 4 * Self.second, "capped")
        #expect(machine.status == .waiting)
        // A consume cancelled at once (queue deleted again) does not reset the backoff.
        _ = machine.connected(now: 10 * Self.second)
        #expect(machine.connectionEnded("cancelled", now: 11 * Self.second).backOffUntil == 15 * Self.second)
        _ = machine.connected(now: 20 * Self.second)
        #expect(machine.connectionEnded("lost", now: 40 * Self.second).backOffUntil == 41 * Self.second, "reset after a stable one")
    }
}
