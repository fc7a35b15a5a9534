import ESBCore
import Foundation
import Hummingbird

/// HTTP basic auth with the `[admin]` credentials in force (they change live on SIGHUP),
/// throttled per client address in the `admin` realm.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = ESBRequestContext
    static let realm = "admin"

    let state: ServerState
    let signIns: SignInGuard

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try Self.authenticate(request, context: context, state: state, signIns: signIns)
        return try await next(request, context)
    }

    /// Throws 401 or 429 unless the request carries the admin credentials.
    static func authenticate(_ request: Request, context: Context, state: ServerState, signIns: SignInGuard) throws {
        let outcome = signIns.check(
            realm: realm, address: context.clientAddress(request, trustedProxies: state.config.main.trustedProxies),
            path: request.uri.path, credentials: SignInGuard.basicCredentials(request),
            verify: state.credentials.matches)
        switch outcome {
        case .accepted: return
        case .challenge, .refused: throw APIError.unauthorized()
        case .throttled(let retryAfter): throw APIError.throttled(retryAfter: retryAfter)
        }
    }
}
