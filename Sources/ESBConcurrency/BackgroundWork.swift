/// Work a long-running part starts at any moment (draining a replaced pool) and that its
/// `run()` owns: the work runs in a task group inside ``run(until:)``, which returns only
/// once all of it has ended. Nothing started here outlives the part.
public final class BackgroundWork: Sendable {
    /// One piece of work.
    public typealias Work = @Sendable () async -> Void
    private let stream: AsyncStream<Work>
    private let continuation: AsyncStream<Work>.Continuation

    /// Nothing started yet; ``run(until:)`` takes the work.
    public init() {
        (stream, continuation) = AsyncStream.makeStream()
    }

    /// Hands `work` to ``run(until:)`` and returns at once; work started before `run` begins
    /// waits for it. Once `run` has stopped taking work, `work` runs here, before this returns.
    public func start(_ work: @escaping Work) async {
        if case .terminated = continuation.yield(work) { await work() }
    }

    /// Runs the work handed in until `end` returns (the part's shutdown signal), then waits
    /// for the work already started.
    public func run(until end: @escaping @Sendable () async -> Void) async {
        let continuation = continuation
        await withDiscardingTaskGroup { group in
            group.addTask {
                await end()
                continuation.finish()
            }
            for await work in stream { group.addTask { await work() } }
        }
    }
}
