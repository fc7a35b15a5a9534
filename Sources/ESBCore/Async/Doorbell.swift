import Synchronization

/// Wakes one waiting task. A ring while nobody waits is kept, so a wake-up is never lost;
/// several rings before the next wait count as one.
final class Doorbell: Sendable {
    private let state = Mutex<State>(State())

    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.rung = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns at the next ring (or at once if one came since the last wait), or after `timeout`.
    /// Only one task may wait at a time.
    func wait(upTo timeout: Duration) async {
        let timer = Task { [self] in
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { ring() }
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ringNow = state.withLock { state -> Bool in
                    if state.rung {
                        state.rung = false
                        return true
                    }
                    precondition(state.waiter == nil, "Doorbell has a single waiter")
                    state.waiter = continuation
                    return false
                }
                if ringNow { continuation.resume() }
            }
        } onCancel: {
            ring()
        }
        timer.cancel()
    }
}
