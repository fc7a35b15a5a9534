import Synchronization

/// The deadline passed before the work finished.
public struct DeadlineExceeded: Error, Sendable, CustomStringConvertible {
    /// The time the work had.
    public let timeout: Duration
    public var description: String { "did not finish within \(timeout)" }
}

/// Runs `operation` and returns what it returns, or throws ``DeadlineExceeded`` once
/// `timeout` has passed, whichever comes first: the one way work races a deadline here.
///
/// At the deadline the operation is cancelled. The caller never waits for it beyond the
/// deadline, nor once the caller itself is cancelled (it then throws `CancellationError`): a
/// task group would wait for work that ignores cancellation (a service that blocks), and the
/// server must not. The timer ends as soon as the operation does.
public func withDeadline<T: Sendable>(
    _ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = Race<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation, timeout: timeout, operation)
        }
    } onCancel: {
        race.cancel()
    }
}

/// One race: the first outcome resumes the caller; the loser is cancelled.
private final class Race<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
        var cancelled = false
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>, timeout: Duration,
               _ operation: @escaping @Sendable () async throws -> T) {
        let alreadyCancelled = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.continuation = continuation
            return false
        }
        if alreadyCancelled {
            continuation.resume(throwing: CancellationError())
            return
        }
        let work = Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await operation()) } catch { outcome = .failure(error) }
            finish(outcome, cancelling: .timer)
        }
        let timer = Task {
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            finish(.failure(DeadlineExceeded(timeout: timeout)), cancelling: .work)
        }
        let over = state.withLock { state -> Bool in
            state.work = work
            state.timer = timer
            return state.continuation == nil || state.cancelled
        }
        // Finished (or cancelled) before the tasks were recorded: stop whichever still runs.
        if over {
            work.cancel()
            timer.cancel()
        }
    }

    /// Resumes the caller with `outcome` unless another outcome came first, after cancelling
    /// the other side (so an operation's cancellation handlers run before its caller goes on).
    /// (Not a key path: one into a generic class's state is built at run time on every call.)
    private enum Side { case work, timer }

    private func finish(_ outcome: Result<T, any Error>, cancelling other: Side) {
        let (continuation, loser) = state.withLock { state in
            defer { state.continuation = nil }
            return (state.continuation, other == .work ? state.work : state.timer)
        }
        guard let continuation else { return }
        loser?.cancel()
        continuation.resume(with: outcome)
    }

    /// The caller was cancelled: the work is cancelled and the caller goes on at once.
    func cancel() {
        let (work, timer, continuation) = state.withLock { state in
            state.cancelled = true
            defer { state.continuation = nil }
            return (state.work, state.timer, state.continuation)
        }
        work?.cancel()
        timer?.cancel()
        continuation?.resume(throwing: CancellationError())
    }
}
