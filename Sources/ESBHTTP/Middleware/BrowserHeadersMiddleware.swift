import HTTPTypes
import Hummingbird

/// Headers that keep browsers from framing, caching or sniffing what the server answers
/// (dashboard pages and exports), on every response of the routes it guards, errors included.
struct BrowserHeadersMiddleware<Context: RequestContext>: RouterMiddleware {

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch {
            response = try APIError.internal(error, path: request.uri.path, logger: context.logger)
                .response(from: request, context: context)
        }
        BrowserHeaders.protect(&response.headers)
        return response
    }

}

/// The headers of ``BrowserHeadersMiddleware``, for responses built elsewhere (exports).
enum BrowserHeaders {
    /// The dashboard's script and styles come from the server itself; nothing may frame it.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        + "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"

    /// Adds the headers pages and exports carry.
    static func protect(_ headers: inout HTTPFields) {
        headers[.xFrameOptions] = "DENY"
        headers[.contentSecurityPolicy] = contentSecurityPolicy
        headers[.cacheControl] = "no-store"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.referrerPolicy] = "same-origin"
    }
}

extension HTTPField.Name {
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!
    static let xESBCID = HTTPField.Name("X-ESB-CID")!
}
