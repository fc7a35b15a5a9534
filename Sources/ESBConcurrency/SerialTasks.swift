import Synchronization

/// Runs work for one key at a time, in the order it was asked for: each waits for the one
/// before it with the same key, and its caller waits for it. Work for different keys runs
/// concurrently.
public final class SerialTasks<Key: Hashable & Sendable>: Sendable {
    private struct Tail: Sendable {
        var id: Int
        var done: @Sendable () async -> Void
    }

    private let tails = Mutex<[Key: Tail]>([:])
    private let counter = Atomic<Int>(0)

    /// No work asked for yet.
    public init() {}

    /// Runs `work` after the work already asked for under `key`, and returns its result.
    /// With `cancellable`, cancelling the caller cancels the work (which must then leave
    /// things as they were: a reload keeps what it had); else the work runs to its end.
    public func run<T: Sendable>(_ key: Key, cancellable: Bool = false,
                                 _ work: @escaping @Sendable () async -> T) async -> T {
        let id = counter.add(1, ordering: .relaxed).newValue
        let task = tails.withLock { tails -> Task<T, Never> in
            let previous = tails[key]?.done
            let task = Task {
                await previous?()
                return await work()
            }
            tails[key] = Tail(id: id, done: { _ = await task.value })
            return task
        }
        let value = cancellable
            ? await withTaskCancellationHandler { await task.value } onCancel: { task.cancel() }
            : await task.value
        tails.withLock { tails in if tails[key]?.id == id { tails[key] = nil } }
        return value
    }
}
