import ESBService

/// The consume benchmark's service: does nothing, so the figure is the channel's own cost.
struct BenchNoop: Service {
    static let name = "bench.noop"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .text("") }
}
