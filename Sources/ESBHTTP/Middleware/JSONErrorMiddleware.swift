import ESBCore
import ESBStore
import Hummingbird
import Logging

/// Turns every error that reaches the edge into the API's JSON error shape, so that
/// 404s, 405s and unexpected failures look like the API's own errors.
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = ESBRequestContext
    let knownRoutes: KnownRoutes
    let state: ServerState
    let signIns: SignInGuard

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as ObjectError {
            throw error.apiError
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = knownRoutes.methods(for: request.uri.path)
            guard !allowed.isEmpty else {
                throw APIError(error.status, code: Self.code(for: error.status), error.body ?? Self.message(for: error.status, request: request))
            }
            // The admin API tells nothing, not even its methods, without credentials.
            // The router ignores empty segments: `//esb//api/x` is the admin API too.
            if request.uri.path.split(separator: "/").prefix(2) == ["esb", "api"] {
                try AdminAuthMiddleware.authenticate(request, context: context, state: state, signIns: signIns)
            }
            var methodError = APIError(.methodNotAllowed, code: "method_not_allowed",
                                       "\(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))")
            methodError.headers[.allow] = allowed.joined(separator: ", ")
            throw methodError
        } catch let error as HTTPError {
            throw APIError(error.status, code: Self.code(for: error.status),
                           error.body ?? Self.message(for: error.status, request: request))
        } catch let error as any HTTPResponseError {
            // NIO's and Hummingbird's own (a body over its limit: 413), with their status.
            throw APIError(error.status, code: Self.code(for: error.status), Self.message(for: error.status, request: request))
        } catch {
            // The ODB cannot be reached (PostgreSQL down, a failover): 503, and the server
            // reconnects by itself.
            if StoreError.unreachable(error) != nil { throw APIError.odbUnavailable(error, logger: context.logger) }
            throw APIError.internal(error, path: request.uri.path, logger: context.logger)
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .unauthorized: "unauthorized"
        case .badRequest: "bad_request"
        case .contentTooLarge: "payload_too_large"
        case .tooManyRequests: "auth.throttled"
        default: "http_\(status.code)"
        }
    }

    static func message(for status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no route for \(request.method) \(request.uri.path)"
        case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path)"
        case .contentTooLarge: "the body is larger than this path takes"
        default: status.reasonPhrase
        }
    }
}
