import Synchronization

/// Runs reloads one at a time, in the order they were asked for: each waits for the one
/// before it, and its caller waits for it (so a change is live when the change returns).
final class ReloadQueue: Sendable {
    private let last = Mutex<Task<Void, Never>?>(nil)

    func run(_ work: @escaping @Sendable () async -> Void) async {
        let next = last.withLock { current -> Task<Void, Never> in
            let previous = current
            let next = Task {
                await previous?.value
                await work()
            }
            current = next
            return next
        }
        await next.value
    }
}
