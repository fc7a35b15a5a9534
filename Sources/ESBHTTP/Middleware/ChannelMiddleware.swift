import ESBCore
import ESBService
import Foundation
import HTTPTypes
import Hummingbird
import NIOFoundationCompat

/// Serves requests that match an HTTP channel by invoking its service with channel `http`;
/// everything else goes on to the router. `/esb/…` and `/metrics` are never channels.
struct ChannelMiddleware<Context: RequestContext>: RouterMiddleware {
    let channels: ChannelRouter
    let invoker: ServiceInvoker

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
            if let security = channel.security {
                guard let (username, password) = AdminAuthMiddleware<Context>.basicCredentials(request),
                      security.accepts(username: username, password: password) else {
                    var error = APIError(.unauthorized, code: "unauthorized", "channel '\(channel.name)' needs valid credentials (HTTP basic auth)")
                    error.headers[.wwwAuthenticate] = "Basic realm=\"\(security.realm)\""
                    throw error
                }
            }
            let body = Data(buffer: try await request.body.collect(upTo: 64 << 20))
            if channel.dataFormat == "json", !body.isEmpty, (try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed])) == nil {
                throw APIError(.badRequest, code: "invalid_json", "channel '\(channel.name)' expects a JSON body (data_format json)")
            }
            let cid = ServiceInvoker.newCID()
            let serviceRequest = ServiceRequest(
                payload: body, channel: "http", cid: cid, headers: ServiceRoutes.headers(request),
                query: ServiceRoutes.query(request), pathParameters: parameters)
            return try await ServiceRoutes.respond(cid: cid) {
                try await invoker.invoke(channel.service, request: serviceRequest)
            }
        }
    }
}
