import ServiceLifecycle

/// Runs a service with a task executor preference, which every child task it creates
/// inherits (SE-0417): the HTTP server's connection and request tasks then run on that
/// executor instead of Swift's cooperative pool.
public struct ExecutorPreferringService<Wrapped: Service>: Service {
    let wrapped: Wrapped
    let executor: any TaskExecutor

    public init(_ wrapped: Wrapped, executor: any TaskExecutor) {
        self.wrapped = wrapped
        self.executor = executor
    }

    public func run() async throws {
        try await withTaskExecutorPreference(executor) { try await wrapped.run() }
    }
}
