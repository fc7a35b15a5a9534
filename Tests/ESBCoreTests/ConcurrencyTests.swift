import ESBConcurrency
import Foundation
import Synchronization
import Testing

/// The shared primitives: one job queue, one race against a deadline, one per-key order.
@Suite struct ConcurrencyTests {
    @Test func aDeadlineReturnsTheResultOrFailsWithoutWaitingForWorkThatIgnoresCancellation() async throws {
        #expect(try await withDeadline(.seconds(5)) { 42 } == 42)
        let release = DispatchSemaphore(value: 0)
        do {
            // Blocks its thread and never looks at cancellation.
            _ = try await withDeadline(.milliseconds(50)) { release.wait(); return 1 }
            Issue.record("expected DeadlineExceeded")
        } catch let error as DeadlineExceeded {
            #expect(error.timeout == .milliseconds(50))
        }
        release.signal()
        // Cancelling the caller cancels the operation.
        let caller = Task { try await withDeadline(.seconds(60)) { try await Task.sleep(for: .seconds(60)) } }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        // A cancelled caller goes on at once, even when the operation ignores cancellation.
        let gate = Gate()
        let stuck = Task { try await withDeadline(.seconds(600)) { await gate.wait() } }
        try await Task.sleep(for: .milliseconds(20))
        stuck.cancel()
        let outcome = try await withDeadline(.seconds(30)) { await stuck.result }
        #expect(throws: CancellationError.self) { try outcome.get() }
        gate.open()
    }

    @Test func aJobQueueHandsJobsOutInOrderAndDrainsBeforeClosing() {
        let queue = JobQueue<Int>()
        for job in 0..<3000 { queue.push(job) }
        queue.close()
        #expect(!queue.push(3000))
        let worker = JobQueue<Int>.Worker()
        var taken: [Int] = []
        while case .job(let job) = queue.take(worker) { taken.append(job) }
        #expect(taken == Array(0..<3000))
        #expect(queue.load.waiting == 0)
    }

    @Test func anIdleThreadIsToldSoAndAParkedOneIsWokenByAPush() {
        let queue = JobQueue<String>()
        let worker = JobQueue<String>.Worker()
        guard case .idle = queue.take(worker, idleTimeout: .milliseconds(20)) else { Issue.record("expected idle"); return }
        let got = Box<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            if case .job(let job) = queue.take(worker) { got.value.withLock { $0 = job } }
            done.signal()
        }
        thread.start()
        while queue.load.parked == 0 { Thread.sleep(forTimeInterval: 0.001) }
        queue.push("woken")
        done.wait()
        #expect(got.value.withLock { $0 } == "woken")
    }

    @Test func workForOneKeyRunsOneAtATimeAndReturnsItsResult() async {
        let serial = SerialTasks<String>()
        let running = Box((now: 0, most: 0))
        let results = await withTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                group.addTask {
                    await serial.run("unit") {
                        running.value.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                        try? await Task.sleep(for: .milliseconds(2))
                        running.value.withLock { $0.now -= 1 }
                        return index
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.sorted() == Array(0..<20))
        #expect(running.value.withLock { $0.most } == 1)
    }

    /// A reload asked for as cancellable stops when its caller is cancelled (a shutdown);
    /// other work runs to its end whatever its caller does.
    @Test func cancellingTheCallerCancelsOnlyCancellableWork() async {
        let serial = SerialTasks<String>()
        for cancellable in [true, false] {
            let caller = Task {
                await serial.run("reload", cancellable: cancellable) {
                    // Cancellable: it would sleep for an hour unless cancelled.
                    (try? await Task.sleep(for: cancellable ? .seconds(3600) : .milliseconds(300))) == nil ? "cancelled" : "slept"
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
            caller.cancel()
            #expect(await caller.value == (cancellable ? "cancelled" : "slept"))
        }
    }
}

/// A lock shared by closures that run on other threads.
private final class Box<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

/// Waits until opened, ignoring cancellation.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func open() {
        state.withLock { state in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }.forEach { $0.resume() }
    }
}
