@testable import ESBAMQP
import Testing

/// The confirm bookkeeping without a broker.
@Suite struct ConfirmTrackerTests {
    @Test func tagsCountFromOneAndSingleAcksSettleOnlyTheirMessage() {
        var tracker = ConfirmTracker<String>()
        #expect(tracker.published("a", deadline: 10) == 1)
        #expect(tracker.published("b", deadline: 20) == 2)
        let settled = tracker.acked(tag: 2, multiple: false)
        #expect(settled.map(\.0) == ["b"])
        #expect(settled.map(\.1) == [.confirmed])
        #expect(tracker.count == 1)
        #expect(tracker.earliestDeadline == 10)
    }

    @Test func multipleAckSettlesEveryTagUpToItsOwn() {
        var tracker = ConfirmTracker<Int>()
        for token in 1...5 { _ = tracker.published(token, deadline: UInt64(token)) }
        _ = tracker.acked(tag: 2, multiple: false)
        let settled = tracker.acked(tag: 4, multiple: true)
        #expect(settled.map(\.0) == [1, 3, 4])
        #expect(tracker.earliestDeadline == 5)
    }

    @Test func returnBeforeAckMakesTheOutcomeReturned() {
        var tracker = ConfirmTracker<String>()
        let tag = tracker.published("m", deadline: 1)
        tracker.returned(tag: tag, code: 312, text: "NO_ROUTE")
        #expect(tracker.acked(tag: tag, multiple: false).map(\.1) == [.returned(code: 312, text: "NO_ROUTE")])
    }

    @Test func nackWinsOverAReturnAndCoversMultiple() {
        var tracker = ConfirmTracker<String>()
        _ = tracker.published("a", deadline: 1)
        let second = tracker.published("b", deadline: 2)
        tracker.returned(tag: second, code: 312, text: "NO_ROUTE")
        #expect(tracker.nacked(tag: second, multiple: true).map(\.1) == [.nacked, .nacked])
        #expect(tracker.count == 0)
        #expect(tracker.earliestDeadline == nil)
    }

    @Test func returnForAnUnknownTagIsIgnored() {
        var tracker = ConfirmTracker<String>()
        tracker.returned(tag: 7, code: 312, text: "NO_ROUTE")
        let tag = tracker.published("a", deadline: 1)
        #expect(tracker.acked(tag: tag, multiple: false).map(\.1) == [.confirmed])
    }

    @Test func resetHandsBackUnsettledOldestFirstAndRenumbers() {
        var tracker = ConfirmTracker<String>()
        _ = tracker.published("a", deadline: 1)
        _ = tracker.published("b", deadline: 2)
        _ = tracker.published("c", deadline: 3)
        _ = tracker.acked(tag: 2, multiple: false)
        #expect(tracker.reset() == ["a", "c"])
        #expect(tracker.published("d", deadline: 4) == 1)
    }
}
