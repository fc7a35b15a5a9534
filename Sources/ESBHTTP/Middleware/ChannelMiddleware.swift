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
            if channel.dataFormat == "json", !body.isEmpty, let problem = JSONSyntax.problem(in: body) {
                throw APIError(.badRequest, code: "invalid_json", "channel '\(channel.name)' expects a JSON body (data_format json): \(problem)")
            }
            if channel.dataFormat == "xml", !body.isEmpty, let problem = Self.xmlProblem(body) {
                throw APIError(.badRequest, code: "invalid_xml", "channel '\(channel.name)' expects an XML body (data_format xml): \(problem)")
            }
            let cid = ServiceInvoker.newCID()
            let serviceRequest = ServiceRequest(
                payload: body, channel: "http", cid: cid, headers: ServiceRoutes.headers(request),
                query: ServiceRoutes.query(request), pathParameters: parameters)
            return try await ServiceRoutes.respond(cid: cid) {
                var response = try await invoker.invoke(channel.service, request: serviceRequest)
                // An XML channel answers XML unless the service chose a type other than the default.
                if channel.dataFormat == "xml", response.contentType == ServiceResponse().contentType {
                    response.contentType = "application/xml; charset=utf-8"
                }
                return response
            }
        }
    }

    /// Why `body` is not well-formed XML, or nil: the SDK's own check, as a service would see it.
    static func xmlProblem(_ body: Data) -> String? {
        do {
            _ = try ServiceRequest(payload: body, channel: "http", cid: "").xml()
            return nil
        } catch let error as ServiceError {
            return error.message
        } catch {
            return "\(error)"
        }
    }
}
