import ESBCore
import Foundation
import Synchronization
import Testing

@Suite struct ServiceExecutorTests {
    /// Services that block every worker do not stop the others: the executor adds a thread.
    @Test func growsPastWorkersBlockedByServices() async throws {
        let executor = ServiceExecutor(threads: 2, maximumThreads: 8)
        let release = DispatchSemaphore(value: 0)
        let blockers = (0..<2).map { _ in
            Task(executorPreference: executor) { release.wait() }
        }
        let answered = await Task(executorPreference: executor) { "answered" }.value
        #expect(answered == "answered")
        #expect(executor.threadCount > 2)
        for _ in blockers { release.signal() }
        for blocker in blockers { await blocker.value }
    }

    @Test func correlationIDsAreTwentyFourHexDigitsAndUnique() {
        var seen = Set<String>()
        for _ in 0..<100_000 {
            let cid = ServiceInvoker.newCID()
            #expect(cid.count == 24 && cid.allSatisfy(\.isHexDigit), "\(cid)")
            seen.insert(cid)
        }
        #expect(seen.count == 100_000)
    }
}
