@testable import ESBAMQP
import Testing

/// The publisher's rules without a broker: sends are numbers, time is a number (ns).
@Suite struct PublisherStateMachineTests {
    typealias Machine = PublisherStateMachine<Int>
    static let second: UInt64 = 1_000_000_000

    static func machine(window: Int = 8, confirm: Bool = true) -> Machine {
        Machine(.init(name: "test", window: window, confirm: confirm, confirmTimeout: 5 * second,
                      initialBackoff: 1 * second, maximumBackoff: 4 * second))
    }

    /// A machine connected and serving.
    static func connected(window: Int = 8, confirm: Bool = true) -> Machine {
        var machine = machine(window: window, confirm: confirm)
        guard case .connect = machine.startConnecting() else { fatalError("not connecting") }
        _ = machine.connected()
        return machine
    }

    static func queued(_ action: Machine.SubmitAction) -> Bool? {
        if case .queued(let wake) = action { return wake }
        return nil
    }

    static func outcomes(_ settlements: [Machine.Settlement]) -> [Int: SendOutcome] {
        Dictionary(uniqueKeysWithValues: settlements.map { ($0.send, $0.outcome) })
    }

    // MARK: Accepting sends

    @Test func sendsAreRefusedUntilConnectedAndBeyondTheWindow() {
        var machine = Self.machine(window: 2)
        guard case .refused = machine.submit(1) else { Issue.record("accepted while connecting"); return }
        guard case .connect(let change) = machine.startConnecting() else { Issue.record("no connect"); return }
        #expect(change == nil, "connecting is where it starts")
        #expect(machine.connected() == .init(status: .connected, error: nil))
        #expect(Self.queued(machine.submit(1)) == false)
        #expect(Self.queued(machine.submit(2)) == false)
        guard case .refused = machine.submit(3) else { Issue.record("accepted beyond the window"); return }
        #expect(machine.inFlight == 2)
        #expect(machine.windowRoom == 0)
        #expect(machine.takeQueued() == [1, 2])
        #expect(machine.takeQueued().isEmpty)
    }

    @Test func onlyASleepingOwnerIsWokenAndOnlyOnce() {
        var machine = Self.connected()
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 60) == .sleep(milliseconds: 1000))
        #expect(Self.queued(machine.submit(1)) == true, "the owner sleeps: wake it")
        #expect(Self.queued(machine.submit(2)) == false, "already woken")
        machine.awake()
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 60) == .stayAwake,
                "sends are queued")
    }

    @Test func sleepIsBoundedByHeartbeatsAndTheNextConfirmDeadline() {
        var machine = Self.connected()
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 2) == .sleep(milliseconds: 500))
        machine.awake()
        #expect(machine.prepareToSleep(now: 0, bufferedInput: true, poolWaiting: false, heartbeatSeconds: 2) == .stayAwake)
        #expect(machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: true, heartbeatSeconds: 2) == .stayAwake,
                "sends wait in the pool and the window has room")
        _ = machine.submit(1)
        _ = machine.published(machine.takeQueued(), now: 0)
        #expect(machine.prepareToSleep(now: 4_900_000_000, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 60)
                == .sleep(milliseconds: 101))
    }

    // MARK: Confirms

    @Test func acksNacksAndReturnsSettleEachSendOnceAndFreeTheWindow() {
        var machine = Self.connected(window: 4)
        for send in 1...4 { _ = machine.submit(send) }
        #expect(machine.nextTag == 1)
        #expect(machine.published(machine.takeQueued(), now: 0).isEmpty, "confirms on: nothing settles on writing")
        #expect(machine.nextTag == 5)
        #expect(machine.awaitingConfirm == 4)
        _ = machine.received(.returned(tag: 2, code: 312, text: "NO_ROUTE"))
        var settled = machine.received(.ack(tag: 2, multiple: true)).settlements
        #expect(Self.outcomes(settled) == [1: .confirmed, 2: .returned])
        if case .failure(let error) = settled[1].result { #expect(error.code == .returned && error.message.contains("312 NO_ROUTE")) }
        settled = machine.received(.nack(tag: 3, multiple: false)).settlements
        #expect(Self.outcomes(settled) == [3: .nacked])
        #expect(machine.received(.ack(tag: 3, multiple: false)).settlements.isEmpty, "a second confirm settles nothing")
        #expect(Self.outcomes(machine.received(.ack(tag: 4, multiple: false)).settlements) == [4: .confirmed])
        #expect(machine.inFlight == 0)
        #expect(machine.windowRoom == 4)
    }

    @Test func aReturnWithoutATagOrForAnUnknownOneChangesNothing() {
        var machine = Self.connected()
        _ = machine.submit(1)
        _ = machine.published(machine.takeQueued(), now: 0)
        #expect(machine.received(.returned(tag: nil, code: 312, text: "NO_ROUTE")).settlements.isEmpty)
        #expect(machine.received(.returned(tag: 99, code: 312, text: "NO_ROUTE")).settlements.isEmpty)
        #expect(Self.outcomes(machine.received(.ack(tag: 1, multiple: false)).settlements) == [1: .confirmed])
    }

    @Test func afterAReconnectTagsStartAtOneAndOldConfirmsAreGone() {
        var machine = Self.connected()
        for send in 1...2 { _ = machine.submit(send) }
        _ = machine.published(machine.takeQueued(), now: 0)
        let ended = machine.connectionEnded(AMQPError(.connectionFailed, "lost"), now: 0)
        #expect(ended.settlements.count == 2)
        _ = machine.startConnecting()
        _ = machine.connected()
        #expect(machine.nextTag == 1)
        _ = machine.submit(3)
        _ = machine.published(machine.takeQueued(), now: 0)
        #expect(Self.outcomes(machine.received(.ack(tag: 2, multiple: true)).settlements) == [3: .confirmed],
                "an ack numbered on the new channel settles only its sends")
        #expect(machine.inFlight == 0)
    }

    @Test func withConfirmsOffAWrittenSendIsDoneAndAPartlyWrittenOneFails() {
        var machine = Self.connected(confirm: false)
        for send in 1...3 { _ = machine.submit(send) }
        _ = machine.takeQueued()
        let failure = AMQPError(.connectionFailed, "reset")
        let settled = machine.published([1, 2], partlyWritten: 3, failure: failure, now: 0)
        #expect(Self.outcomes(settled) == [1: .written, 2: .written, 3: .failed])
        #expect(machine.inFlight == 0)
        #expect(machine.awaitingConfirm == 0)
    }

    @Test func aMissingConfirmEndsTheConnectionAndFailsWhatWasWrittenAsConfirmTimeout() {
        var machine = Self.connected()
        _ = machine.submit(1)
        _ = machine.published(machine.takeQueued(), now: 10)
        #expect(machine.tick(now: 10 + 5 * Self.second - 1) == .none)
        guard case .end(let error) = machine.tick(now: 10 + 5 * Self.second) else { Issue.record("no end"); return }
        #expect(error.code == .confirmTimeout)
        #expect(error.message.contains("5000 ms"))
        let ended = machine.connectionEnded(error, now: 20)
        #expect(Self.outcomes(ended.settlements) == [1: .confirmTimeout])
        #expect(ended.change == .init(status: .backingOff, error: error.message))
    }

    @Test func aClosedChannelFailsItsSendsAndTagsStartAgainOnTheNext() {
        var machine = Self.connected()
        for send in 1...2 { _ = machine.submit(send) }
        _ = machine.published(machine.takeQueued(), now: 0)
        let action = machine.received(.channelClosed(code: 404, text: "NOT_FOUND - no exchange"))
        #expect(action.replaceChannel)
        #expect(action.end == nil)
        #expect(Self.outcomes(action.settlements) == [1: .failed, 2: .failed])
        if case .failure(let error) = action.settlements[0].result { #expect(error.code == .channelClosed) }
        #expect(machine.nextTag == 1)
        _ = machine.submit(3)
        _ = machine.published(machine.takeQueued(), now: 0)
        #expect(Self.outcomes(machine.received(.ack(tag: 1, multiple: false)).settlements) == [3: .confirmed])
    }

    @Test func theBrokerClosingTheConnectionEndsIt() {
        var machine = Self.connected()
        let action = machine.received(.connectionClosed(code: 320, text: "CONNECTION_FORCED"))
        #expect(action.end?.code == .connectionFailed)
        #expect(action.end?.message.contains("320 CONNECTION_FORCED") == true)
    }

    @Test func aBlockedBrokerIsReportedWhileStillConnected() {
        var machine = Self.connected()
        #expect(machine.received(.blocked(reason: "low on memory")).change == .init(status: .connected, error: "the broker blocked publishing: low on memory"))
        #expect(machine.received(.blocked(reason: "low on memory")).change == nil, "said once")
        #expect(machine.status == .connected)
    }

    // MARK: Never lost, never republished

    @Test func anEndedConnectionFailsWhatItWroteHandsBackWhatItDidNotAndAcceptsNothingMore() {
        var machine = Self.connected()
        for send in 1...2 { _ = machine.submit(send) }
        _ = machine.published(machine.takeQueued(), now: 0)
        for send in 3...4 { _ = machine.submit(send) }  // queued, not yet written
        let error = AMQPError(.connectionFailed, "connection lost")
        let ended = machine.connectionEnded(error, now: 100)
        #expect(Self.outcomes(ended.settlements) == [1: .failed, 2: .failed], "written: failed here, never republished")
        #expect(ended.unwritten == [3, 4], "not written: for the pool's other connections")
        #expect(machine.inFlight == 0)
        #expect(machine.status == .backingOff)
        guard case .refused = machine.submit(5) else { Issue.record("accepted while backing off"); return }
        #expect(machine.reconnects == 1)
    }

    @Test func aWriteThatFailsMidwayKeepsTheStartedSendsAndReturnsTheRest() {
        var machine = Self.connected()
        for send in 1...4 { _ = machine.submit(send) }
        _ = machine.takeQueued()
        let failure = AMQPError(.connectionFailed, "broken pipe")
        #expect(machine.published([1], partlyWritten: 2, failure: failure, now: 0).isEmpty)
        #expect(machine.unwritten([3, 4]) == [3, 4])
        #expect(machine.inFlight == 2)
        let ended = machine.connectionEnded(failure, now: 0)
        #expect(Self.outcomes(ended.settlements) == [1: .failed, 2: .failed])
        #expect(ended.unwritten.isEmpty, "3 and 4 already left")
        #expect(machine.inFlight == 0)
    }

    @Test func aSendThatCannotBeFramedFailsAloneAndFreesItsPlace() {
        var machine = Self.connected(window: 1)
        _ = machine.submit(1)
        _ = machine.takeQueued()
        let settlement = machine.refused(1, AMQPError(.invalidMessage, "too long"))
        #expect(settlement.outcome == .failed)
        #expect(machine.inFlight == 0)
        #expect(Self.queued(machine.submit(2)) != nil)
    }

    @Test func sendsAdoptedFromThePoolCountInTheWindow() {
        var machine = Self.connected(window: 3)
        _ = machine.submit(1)
        #expect(machine.windowRoom == 2)
        machine.adopted(2)
        #expect(machine.windowRoom == 0)
        guard case .refused = machine.submit(4) else { Issue.record("window overrun"); return }
    }

    // MARK: Reconnects and stops

    @Test func connectFailuresBackOffExponentiallyUpToTheCapAndASuccessResetsIt() {
        var machine = Self.machine()
        let error = AMQPError(.connectionFailed, "refused")
        var waits: [UInt64] = []
        for _ in 0..<5 {
            _ = machine.startConnecting()
            waits.append(machine.connectFailed(error, now: 0).backOffUntil ?? 0)
        }
        #expect(waits == [1, 2, 4, 4, 4].map { $0 * Self.second })
        #expect(machine.status == .backingOff)
        #expect(machine.lastError == "refused")
        _ = machine.startConnecting()
        _ = machine.connected()
        let ended = machine.connectionEnded(error, now: 0)
        #expect(ended.backOffUntil == Self.second, "reset by the connect that worked")
    }

    @Test func aStopDrainsWhatIsInFlightThenCloses() {
        var machine = Self.connected()
        _ = machine.submit(1)
        _ = machine.published(machine.takeQueued(), now: 0)
        machine.stop()
        guard case .refused = machine.submit(2) else { Issue.record("accepted while stopping"); return }
        #expect(machine.windowRoom == 0, "takes nothing more from the pool")
        #expect(machine.tick(now: 1) == .none, "1 awaits its confirm")
        _ = machine.received(.ack(tag: 1, multiple: false))
        #expect(machine.tick(now: 2) == .drained)
        let ended = machine.connectionEnded(nil, now: 3)
        #expect(ended.backOffUntil == nil, "stopped: no reconnect")
        #expect(ended.change == .init(status: .closed, error: nil))
        guard case .exit = machine.startConnecting() else { Issue.record("reconnects after a stop"); return }
    }

    @Test func aStopWhileBackingOffExitsWithoutConnecting() {
        var machine = Self.machine()
        _ = machine.startConnecting()
        _ = machine.connectFailed(AMQPError(.connectionFailed, "refused"), now: 0)
        machine.stop()
        #expect(machine.isStopping)
        guard case .exit(let change) = machine.startConnecting() else { Issue.record("connects after a stop"); return }
        #expect(change == .init(status: .closed, error: nil))
    }

    // MARK: Direct writes by service threads

    @Test func aServiceThreadMayWriteItsOwnSendOnlyWhileTheOwnerSleepsWithNothingQueued() {
        var machine = Self.connected(window: 2)
        #expect(machine.directTag() == nil, "the owner is awake")
        _ = machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 60)
        #expect(machine.directTag() == 1)
        let taken = machine.submitDirect(1, tag: 1, now: 0, limit: Self.second)
        #expect(taken)
        #expect(machine.isStalled(now: 2 * Self.second), "the watchdog covers the direct write")
        #expect(machine.directWritten(1, failure: nil) == nil, "confirms on: settled by its confirm")
        #expect(!machine.isStalled(now: 2 * Self.second))
        #expect(machine.awaitingConfirm == 1)
        let stale = machine.submitDirect(2, tag: 1, now: 0, limit: Self.second)
        #expect(!stale, "the tag moved on: submit instead")
        _ = machine.submit(2)
        #expect(machine.directTag() == nil, "a queued send goes first")
        _ = machine.takeQueued()
        #expect(Self.outcomes(machine.received(.ack(tag: 1, multiple: false)).settlements) == [1: .confirmed])
        machine.stop()
        #expect(machine.directTag() == nil, "stopping")
    }

    @Test func directWritesRespectTheWindowAndWithConfirmsOffSettleOnWriting() {
        var machine = Self.connected(window: 1, confirm: false)
        _ = machine.prepareToSleep(now: 0, bufferedInput: false, poolWaiting: false, heartbeatSeconds: 60)
        let first = machine.submitDirect(1, tag: 1, now: 0, limit: Self.second)
        #expect(first)
        #expect(machine.directTag() == nil, "the window is full")
        #expect(machine.directWritten(1, failure: nil)?.outcome == .written)
        let second = machine.submitDirect(2, tag: 1, now: 0, limit: Self.second)
        #expect(second)
        #expect(machine.directWritten(2, failure: AMQPError(.connectionFailed, "reset"))?.outcome == .failed)
        #expect(machine.inFlight == 0)
    }

    // MARK: Stalls

    @Test func anOwnerBlockedPastItsLimitIsStalledAndNotBefore() {
        var machine = Self.connected()
        #expect(!machine.isStalled(now: 100 * Self.second))
        machine.willBlock(now: 10, limit: Self.second)
        #expect(!machine.isStalled(now: 10 + Self.second))
        #expect(machine.isStalled(now: 11 + Self.second))
        machine.unblocked()
        #expect(!machine.isStalled(now: 100 * Self.second))
    }
}
