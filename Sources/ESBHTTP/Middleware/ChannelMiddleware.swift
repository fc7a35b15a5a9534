import ESBCore
import ESBService
import Foundation
import HTTPTypes
import Hummingbird
import NIOFoundationCompat

/// Serves requests that match an HTTP channel by invoking its service with channel `http`;
/// everything else goes on to the router. `/esb/…` and `/metrics` are never channels.
struct ChannelMiddleware: RouterMiddleware {
    typealias Context = ESBRequestContext
    let channels: ChannelRouter
    let invoker: ServiceInvoker
    let state: ServerState
    let signIns: SignInGuard

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path.hasPrefix("/esb/") || path == "/esb" || path == "/metrics" {
            return try await next(request, context)
        }
        switch channels.resolve(method: request.method.rawValue, path: Substring(path)) {
        case .none:
            return try await next(request, context)
        case .methodNotAllowed(let allowed):
            var error = APIError(.methodNotAllowed, code: "method_not_allowed",
                                 "\(request.method) is not allowed on \(path); allowed: \(allowed.joined(separator: ", "))")
            error.headers[.allow] = allowed.joined(separator: ", ")
            throw error
        case .matched(let channel, let parameters):
            var headers = ServiceRoutes.headers(request)
            if let security = channel.security {
                try authenticate(request, context: context, channel: channel, security: security)
                // Checked here; services never see the credentials.
                headers["authorization"] = nil
            }
            let limit = channel.maxBodyBytes ?? state.config.main.maxBodyBytes
            let body = Data(buffer: try await request.body.collect(upTo: limit))
            if !body.isEmpty, let problem = PayloadFormat.problem(in: body, format: channel.dataFormat) {
                let format = channel.dataFormat
                throw APIError(.badRequest, code: "invalid_\(format)",
                               "channel '\(channel.name)' expects a\(format == "xml" ? "n XML" : " JSON") body (data_format \(format)): \(problem)")
            }
            let cid = ServiceInvoker.newCID()
            let serviceRequest = ServiceRequest(
                payload: body, channel: "http", cid: cid, headers: headers,
                query: ServiceRoutes.query(request), pathParameters: parameters)
            return try await ServiceRoutes.respond(cid: cid, detailed: false) {
                var response = try await invoker.invoke(channel.service, request: serviceRequest)
                // An XML channel answers XML unless the service chose a type other than the default.
                if channel.dataFormat == "xml", response.contentType == ServiceResponse().contentType {
                    response.contentType = "application/xml; charset=utf-8"
                }
                return response
            }
        }
    }

    /// Basic auth against the channel's security definition, throttled per definition.
    private func authenticate(_ request: Request, context: Context, channel: ChannelRouter.Channel,
                              security: ChannelRouter.Credentials) throws {
        let outcome = signIns.check(
            realm: "def_sec:" + security.definition,
            address: context.clientAddress(request, trustedProxies: state.config.main.trustedProxies),
            path: request.uri.path, credentials: SignInGuard.basicCredentials(request), verify: security.accepts)
        switch outcome {
        case .accepted:
            return
        case .challenge, .refused:
            var error = APIError(.unauthorized, code: "unauthorized", "this channel needs valid credentials (HTTP basic auth)")
            error.headers[.wwwAuthenticate] = "Basic realm=\"\(security.realm.replacingOccurrences(of: "\"", with: "'"))\""
            throw error
        case .throttled(let retryAfter):
            throw APIError.throttled(retryAfter: retryAfter)
        }
    }
}
