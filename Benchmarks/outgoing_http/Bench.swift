import ESBService
import Foundation

/// Behind the channel /bench/proxy: calls the upstream through the outgoing HTTP connection
/// `bench.upstream` and answers its JSON as it came.
struct Proxy: Service {
    static let name = "bench.proxy"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let upstream = try await context.outgoing.http["bench.upstream"].get()
        return .data(upstream.payload, contentType: "application/json")
    }
}
