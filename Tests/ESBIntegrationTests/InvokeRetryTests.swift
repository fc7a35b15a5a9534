import Foundation
import Testing

/// invoke/retry, blocking mode, in a real esbd with dropped services.
@Suite struct InvokeRetryTests {
    static let services = """
        import ESBService
        import Foundation
        import Synchronization

        /// Fails until it has been called `failures + 1` times (per key), then answers its call count.
        struct Flaky: Service {
            static let name = "retry.flaky"
            static let calls = Mutex<[String: Int]>([:])
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let parts = request.text.split(separator: ":")
                let key = String(parts[0]), failures = Int(parts[1]) ?? 0
                let call = Flaky.calls.withLock { calls -> Int in
                    calls[key, default: 0] += 1
                    return calls[key]!
                }
                if call <= failures { throw ServiceError(.internalError, "failure number \\(call)") }
                return parts.count > 2 ? .empty : .text("call \\(call)")
            }
        }

        struct Count: Service {
            static let name = "retry.count"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                .text(String(Flaky.calls.withLock { $0[request.text] ?? 0 }))
            }
        }

        struct Caller: Service {
            static let name = "retry.caller"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let repeats = Int(request.query["repeats"] ?? "") ?? 3
                do {
                    let result = try await context.patterns.invokeRetry.invoke(
                        "retry.flaky", payload: request.text, repeats: repeats, interval: .milliseconds(20), backoff: 2,
                        maxInterval: .milliseconds(50))
                    guard case .response(let response) = result else { return .text("pending") }
                    return .text("ok|status \\(response.status)|" + response.text)
                } catch let error as ServiceError {
                    return .text(error.code.rawValue + "|" + error.message)
                }
            }
        }
        """

    @Test func blockingRetriesStopAtTheFirstSuccessAndReportEveryFailure() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("retry.swift", Self.services)
        try await server.waitForDeployment("retry.swift")
        func call(_ body: String, repeats: Int = 3) async throws -> String {
            try await server.request("POST", "/esb/api/invoke/retry.caller?repeats=\(repeats)", body: Data(body.utf8), credentials: server.admin).text
        }
        func count(_ key: String) async throws -> String {
            try await server.request("POST", "/esb/api/invoke/retry.count", body: Data(key.utf8), credentials: server.admin).text
        }

        #expect(try await call("a:2") == "ok|status 200|call 3", "succeeds on attempt 3")
        try await Task.sleep(for: .milliseconds(200))
        #expect(try await count("a") == "3", "and is not called again")

        let exhausted = try await call("b:10", repeats: 2)
        #expect(exhausted.hasPrefix("retry.exhausted|"))
        for attempt in 1...3 { #expect(exhausted.contains("attempt \(attempt): esb.internal: failure number \(attempt)"), "\(exhausted)") }
        #expect(try await count("b") == "3", "repeats 2: at most 3 calls")

        #expect(try await call("c:0:empty") == "ok|status 204|", "an empty response is a success")
        #expect(try await count("c") == "1")
    }
}
