import ESBStore
@testable import ESBCore
import Foundation
import GRDB
import Testing

/// The durable async store on a real SQLite file: group commits, claims, recovery, pruning.
@Suite struct AsyncStoreTests {
    func store() throws -> AsyncStore {
        AsyncStore(odb: try ODB(path: databasePath()), server: "test")
    }

    func databasePath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("esb-async-\(UUID().uuidString)/esb.db").path
    }

    func record(now: Int64 = 0, callback: String? = nil) -> AsyncRecord {
        AsyncRecord(kind: .invokeAsync, target: "t", payload: Data("x".utf8), source: nil, origCID: nil, callback: callback, now: now)
    }

    @Test func concurrentAcceptsAreAllCommittedAndReadableFromAnotherConnection() async throws {
        let path = databasePath()
        let store = AsyncStore(odb: try ODB(path: path), server: "test")
        let cids = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<500 {
                group.addTask {
                    let record = record()
                    try await store.accept(record)
                    return record.cid
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        let reopened = try ODB(path: path)
        let stored = try await reopened.sqlite.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM async_invocation") }
        #expect(stored == 500)
        #expect(Set(cids).count == 500)
    }

    @Test func aFailingOperationFailsAloneInItsGroupCommit() async throws {
        let store = try store()
        let duplicate = record()
        try await store.accept(duplicate)
        let again = Task { try await store.accept(duplicate) }
        let other = Task { try await store.accept(record()) }
        await #expect(throws: DatabaseError.self) { try await again.value }
        try await other.value
        #expect(try await store.counts()[.pending] == 2)
    }

    @Test func claimsTakeDueRecordsEarliestFirstAndRecoveryMakesRunningOnesDueAgain() async throws {
        let store = try store()
        let later = record(now: 5_000), early = record(now: 100), withCallback = record(now: 200, callback: "cb")
        for item in [later, early, withCallback] { try await store.accept(item) }
        let claimed = try await store.claimDue(now: 1_000, limit: 10)
        #expect(claimed.map(\.cid) == [early.cid, withCallback.cid])
        #expect(try await store.nextDue() == 5_000)
        #expect(try await store.claimDue(now: 1_000, limit: 10).isEmpty, "claimed records are not claimed twice")

        var finished = claimed[1]
        finished.recordAttempt(.success(Data()), now: 1_100)
        finished.claim(now: 1_100)  // callback handed over, then the process dies
        try await store.update(finished)

        let recovered = try await store.recover(now: 2_000)
        #expect(recovered.attempts == 1 && recovered.callbacks == 1)
        let again = try await store.claimDue(now: 2_000, limit: 10)
        #expect(Set(again.map(\.cid)) == [early.cid, withCallback.cid])
        let redelivery = try #require(again.first { $0.cid == withCallback.cid })
        #expect(redelivery.callbackStatus == .running && redelivery.callbackDeliveries == 2)
        #expect(try await store.record(cid: early.cid)?.interruptions == 1)
    }

    @Test func pruningDeletesOnlyFinishedRecordsOlderThanTheCutoff() async throws {
        let store = try store()
        var old = record(now: 0), recent = record(now: 0), waiting = record(now: 0, callback: "cb")
        for index in [0, 1, 2] {
            var item = [old, recent, waiting][index]
            item.claim(now: 0)
            item.recordAttempt(.success(Data()), now: index == 1 ? 9_000 : 1_000)
            try await store.accept(item)
            if index == 0 { old = item } else if index == 1 { recent = item } else { waiting = item }
        }
        #expect(try await store.prune(finishedBefore: 5_000) == 1)
        #expect(try await store.record(cid: old.cid) == nil)
        #expect(try await store.record(cid: recent.cid) != nil)
        #expect(try await store.record(cid: waiting.cid) != nil, "its callback is still pending")
    }
}
