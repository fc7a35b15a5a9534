import Synchronization

/// Wakes waiting tasks. A ring while nobody waits is kept, so a wake-up is never lost;
/// several rings before the next wait count as one.
public final class Doorbell: Sendable {
    private let state = Mutex<State>(State())

    private struct State {
        var rung = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// A doorbell nobody has rung.
    public init() {}

    /// Wakes every task waiting now, or the next one to wait.
    public func ring() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.waiters.isEmpty { state.rung = true }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Returns at the next ring (or at once if one came since the last wait), or after `timeout`.
    public func wait(upTo timeout: Duration) async {
        _ = try? await withDeadline(timeout) { [self] in await wait() }
    }

    /// Returns at the next ring, at once if one came since the last wait, or when cancelled.
    public func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ringNow = state.withLock { state -> Bool in
                    if state.rung {
                        state.rung = false
                        return true
                    }
                    // Cancelled before it got here: its handler's ring went to the others.
                    if Task.isCancelled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if ringNow { continuation.resume() }
            }
        } onCancel: {
            ring()
        }
    }
}
