import ESBConcurrency
import ESBConfig
import ESBService
import Foundation
import Logging
import Synchronization

/// Runs `[startup_services]` once per start, in file order, one after another, and keeps
/// each entry's result for `GET /esb/api/startup-services`. A failure is recorded and
/// logged, never fatal.
public final class StartupServices: Sendable {
    /// One entry's result.
    public struct Result: Sendable, Encodable, Equatable {
        public var service: String
        public var status: Status
        @ExplicitNull public var durationMs: Int? = nil
        @ExplicitNull public var error: String? = nil
        public var line: Int

        enum CodingKeys: String, CodingKey {
            case service, status, error, line
            case durationMs = "duration_ms"
        }

        public enum Status: String, Sendable, Encodable, CaseIterable {
            /// Not run yet.
            case pending
            case ok
            case failed
            /// Its payload file could not be read.
            case skipped
        }
    }

    private let entries: [ServerConfig.StartupService]
    private let results: Mutex<[Result]>
    private let invoker: ServiceInvoker
    private let timeout: Duration
    private let logger: Logger

    public init(config: ServerConfig, invoker: ServiceInvoker, logger: Logger) {
        entries = config.startupServices
        results = Mutex(config.startupServices.map { Result(service: $0.service, status: .pending, line: $0.line) })
        self.invoker = invoker
        timeout = .seconds(config.main.startupServiceTimeoutSeconds)
        self.logger = logger
    }

    /// The results so far, in file order.
    public var current: [Result] { results.withLock { $0 } }

    /// Runs every entry in order; a cancellation (the server stopping) leaves the entries not
    /// yet run `pending`.
    public func run() async {
        for (index, entry) in entries.enumerated() where !Task.isCancelled {
            let result = await runOne(entry)
            results.withLock { $0[index] = result }
        }
    }

    private func runOne(_ entry: ServerConfig.StartupService) async -> Result {
        var result = Result(service: entry.service, status: .ok, line: entry.line)
        let payload: Data
        switch entry.payload {
        case .inline(let text):
            payload = Data(text.utf8)
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                result.status = .skipped
                result.error = "payload file '\(path)' does not exist or cannot be read"
                logger.warning("startup service skipped", metadata: ["esb.service": "\(entry.service)", "esb.error": "\(result.error!)"])
                return result
            }
            payload = data
        }
        let start = ContinuousClock.now
        let request = ServiceRequest(payload: payload, channel: "startup-service", cid: ServiceInvoker.newCID())
        let invoker = self.invoker
        let timeout = self.timeout
        do {
            _ = try await withDeadline(timeout) { try await invoker.invoke(entry.service, request: request) }
        } catch {
            let error: any Error = if let late = error as? DeadlineExceeded { ServiceError("startup.timeout", late.description) } else { error }
            result.status = .failed
            result.error = "\(error)"
            logger.error("startup service failed", metadata: ["esb.service": "\(entry.service)", "esb.error": "\(error)"])
        }
        let elapsed = ContinuousClock.now - start
        result.durationMs = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        return result
    }
}
