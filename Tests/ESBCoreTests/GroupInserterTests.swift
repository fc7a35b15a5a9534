@testable import ESBStore
import Testing

/// How a failed group insert is judged: what its callers are told depends on it (never
/// sent: not accepted; refused: each row again alone; unknown: sent again, skipping rows
/// already there, and if that fails too, "may have been stored").
@Suite struct GroupInserterTests {
    @Test func aFailedStatementIsJudgedByWhatIsKnownOfIt() {
        #expect(PostgresGroupInserter.judge(StoreError(.unavailable, "no connection within 10 s")) == .neverSent)
        var lost = StoreError(.unavailable, "no answer within 40 s")
        lost.outcomeUnknown = true
        #expect(PostgresGroupInserter.judge(lost) == .unknown)
        #expect(PostgresGroupInserter.judge(StoreError("a broken statement")) == .unknown)
        #expect(PostgresGroupInserter.judge(CancellationError()) == .unknown)
        let unknown = PostgresGroupInserter.outcomeUnknown(StoreError("connection reset"))
        #expect(unknown.cause == .unavailable && unknown.outcomeUnknown && unknown.message == "connection reset")
    }
}
