import ESBConcurrency
import ServiceLifecycle

/// Runs work once the HTTP listener accepts (the startup services), as a member of the
/// server's group: a graceful shutdown cancels work not yet done.
public struct OnceListening: Service, CustomStringConvertible {
    public var description: String { "OnceListening" }
    private let listening = Doorbell()
    private let work: @Sendable () async -> Void

    /// `work` to run once the listener is up.
    public init(_ work: @escaping @Sendable () async -> Void) { self.work = work }

    /// The listener accepts: the work may start.
    public func listenerIsUp() { listening.ring() }

    /// Waits for the listener, then runs the work, unless the server stops first; then stays
    /// until the group stops it. A member that returns while the group is shutting down the
    /// members after it counts as having failed (ServiceGroup's rule, whatever its
    /// termination behavior), so a SIGTERM arriving as the work ends would exit 1.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await listening.wait()
            if !Task.isCancelled { await work() }
        }
        try? await gracefulShutdown()
    }
}
