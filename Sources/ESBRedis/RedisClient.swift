import Dispatch
import ESBConcurrency
import Foundation
import Synchronization

/// A pool of `poolSize` Redis connections, each owned by one thread that takes calls from a
/// shared queue. A lost connection is reopened on the next call; while Redis is down, calls
/// fail at once with `unavailable` (one connect attempt per thread per retry interval).
public final class RedisClient: Sendable {
    private final class Job: Sendable {
        let commands: [[String]]
        let completion: @Sendable (Result<[RedisReply], RedisError>) -> Void
        init(_ commands: [[String]], _ completion: @escaping @Sendable (Result<[RedisReply], RedisError>) -> Void) {
            self.commands = commands
            self.completion = completion
        }
    }

    private struct Shared {
        var connected: Set<Int> = []
        var lastError: String?
    }

    public let configuration: RedisConfiguration
    private let shared = Mutex(Shared())
    private let queue = JobQueue<Job>()
    /// Whether the most recent call or connect succeeded.
    private let lastSucceeded = Atomic<Bool>(true)

    /// Starts the connection threads; they connect on their first call.
    public init(_ configuration: RedisConfiguration) {
        self.configuration = configuration
        for index in 0..<max(1, configuration.poolSize) {
            let thread = Thread { [self] in run(index) }
            thread.name = "kvdb:\(index)"
            thread.start()
        }
    }

    /// Runs the commands in one round trip; replies in order, error replies in place.
    /// - Throws: ``RedisError`` `unavailable`, `timeout`, `closed`.
    public func pipeline(_ commands: [[String]]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<[RedisReply], any Error>) in
            let job = Job(commands) { continuation.resume(with: $0.mapError { $0 as any Error }) }
            if !queue.push(job) {
                job.completion(.failure(RedisError(.closed, "kvdb \(configuration.address): the client is shut down")))
            }
        }
    }

    /// Runs one command; an error reply throws `reply_error`.
    public func execute(_ command: [String]) async throws -> RedisReply {
        let reply = try await pipeline([command])[0]
        if case .error(let text) = reply { throw RedisError(.reply, text) }
        return reply
    }

    /// For health pages: open connections, whether the most recent call succeeded, and the
    /// last failure.
    public var status: (connected: Int, size: Int, healthy: Bool, lastError: String?) {
        let healthy = lastSucceeded.load(ordering: .relaxed)
        return shared.withLock { ($0.connected.count, max(1, configuration.poolSize), healthy, $0.lastError) }
    }

    /// Stops the threads once queued calls are done.
    public func shutdown() {
        queue.close()
    }

    private func run(_ index: Int) {
        var connection: RedisConnection?
        var retryAt: UInt64 = 0
        var lastFailure: RedisError?
        let worker = JobQueue<Job>.Worker()
        while case .job(let job) = queue.take(worker) {
            if connection?.isUsable != true {
                connection = nil
                let now = DispatchTime.now().uptimeNanoseconds
                if now < retryAt, let lastFailure {
                    lastSucceeded.store(false, ordering: .relaxed)
                    job.completion(.failure(lastFailure))
                    continue
                }
                do {
                    connection = try RedisConnection(configuration)
                    shared.withLock { _ = $0.connected.insert(index) }
                } catch {
                    lastFailure = error
                    retryAt = now + UInt64(configuration.retryIntervalMilliseconds) * 1_000_000
                    shared.withLock { $0.lastError = error.message }
                    lastSucceeded.store(false, ordering: .relaxed)
                    job.completion(.failure(error))
                    continue
                }
            }
            do {
                let replies = try connection!.pipeline(job.commands)
                lastSucceeded.store(true, ordering: .relaxed)
                job.completion(.success(replies))
            } catch {
                // Never retried: the command may have run before the connection failed.
                connection = nil
                shared.withLock {
                    $0.connected.remove(index)
                    $0.lastError = error.message
                }
                lastSucceeded.store(false, ordering: .relaxed)
                job.completion(.failure(error))
            }
        }
        shared.withLock { _ = $0.connected.remove(index) }
    }
}
