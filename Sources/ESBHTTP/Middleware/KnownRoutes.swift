import ESBCore
import Hummingbird
import Synchronization

/// The router's own routes, indexed once after registration, so that a path served under
/// other methods answers 405 with `Allow` instead of Hummingbird's 404.
final class KnownRoutes: Sendable {
    private let routes = Mutex<[(path: ChannelPath, method: String)]>([])

    /// Records the routes of a fully built router.
    func record(_ descriptions: [Router<ESBRequestContext>.RouteDescription]) {
        let indexed = descriptions.map { (ChannelPath($0.path.description), $0.method.rawValue) }
        routes.withLock { $0 = indexed }
    }

    /// The methods `path` is served under, sorted; empty when no route has the path.
    func methods(for path: String) -> [String] {
        let routes = routes.withLock { $0 }
        return Set(routes.filter { $0.path.match(Substring(path)) != nil }.map(\.method)).sorted()
    }
}
