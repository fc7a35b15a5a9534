import ESBService
import Foundation

/// Dropped into esbd by Benchmarks/kvdb.py: reads `pages` pages of 25 from a list, with a
/// fresh ListPaginator per page (as a web request would) or one paginator for all.
struct PaginatorBench: Service {
    static let name = "bench.paginate"

    struct Input: Decodable {
        var key: String
        var pages: Int
        var fresh: Bool
    }

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let input = try request.decode(Input.self)
        var shared = ListPaginator(kvdb: context.kvdb, key: input.key, perPage: 25)
        let numPages = try await shared.numPages
        let started = ContinuousClock.now
        for index in 0..<input.pages {
            if input.fresh { shared = ListPaginator(kvdb: context.kvdb, key: input.key, perPage: 25) }
            let page = try await shared.page(index % numPages + 1)
            guard page.count == 25 else { throw ServiceError(.kvdbReplyError, "short page") }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return try .json(["pages": Double(input.pages), "seconds": seconds, "rate": Double(input.pages) / seconds])
    }
}
