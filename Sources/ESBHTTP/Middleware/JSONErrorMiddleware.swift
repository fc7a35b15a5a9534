import ESBCore
import Hummingbird
import Logging

/// Turns every error that reaches the edge into the JSON error shape of §7, so that
/// 404s, 405s and unexpected failures look like the API's own errors.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let knownRoutes: KnownRoutes
    let state: ServerState

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = knownRoutes.methods(for: request.uri.path)
            guard !allowed.isEmpty else {
                throw APIError(error.status, code: Self.code(for: error.status), error.body ?? Self.message(for: error.status, request: request))
            }
            // The admin API tells nothing, not even its methods, without credentials.
            if request.uri.path.hasPrefix("/esb/api/") {
                guard let (username, password) = AdminAuthMiddleware<Context>.basicCredentials(request),
                      state.credentials.matches(username: username, password: password) else { throw APIError.unauthorized() }
            }
            var methodError = APIError(.methodNotAllowed, code: "method_not_allowed",
                                       "\(request.method) is not allowed on \(request.uri.path); allowed: \(allowed.joined(separator: ", "))")
            methodError.headers[.allow] = allowed.joined(separator: ", ")
            throw methodError
        } catch let error as HTTPError {
            throw APIError(error.status, code: Self.code(for: error.status),
                           error.body ?? Self.message(for: error.status, request: request))
        } catch {
            context.logger.error("request failed", metadata: ["esb.path": "\(request.uri.path)", "esb.error": "\(error)"])
            throw APIError(.internalServerError, code: "internal", "internal error: \(error)")
        }
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .unauthorized: "unauthorized"
        case .badRequest: "bad_request"
        case .contentTooLarge: "payload_too_large"
        default: "http_\(status.code)"
        }
    }

    static func message(for status: HTTPResponse.Status, request: Request) -> String {
        switch status {
        case .notFound: "no route for \(request.method) \(request.uri.path)"
        case .methodNotAllowed: "\(request.method) is not allowed on \(request.uri.path)"
        default: status.reasonPhrase
        }
    }
}
