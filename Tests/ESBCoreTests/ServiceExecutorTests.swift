import ESBConcurrency
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

    /// Only the executor's workers may make a blocking C call in place: Swift's cooperative
    /// pool and other threads are never taken for service threads.
    @Test func serviceWorkerThreadsAreMarkedAndOtherThreadsAreNot() async {
        let executor = ServiceExecutor(threads: 1, maximumThreads: 2)
        #expect(await Task(executorPreference: executor) { ServiceThread.isCurrent }.value)
        #expect(await Task.detached { ServiceThread.isCurrent }.value == false)
        let plain = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: ServiceThread.isCurrent) }.start()
        }
        #expect(plain == false)
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
