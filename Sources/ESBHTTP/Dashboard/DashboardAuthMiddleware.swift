import Foundation
import Hummingbird
import NIOFoundationCompat

/// Guards `/esb/dashboard/*` but the sign-in page: without a session a page request goes to
/// sign-in and anything else is refused (403); every POST must carry the session's CSRF
/// token in its `csrf` field (403 otherwise). The form body is collected here once and
/// stays readable by the handler.
struct DashboardAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let sessions: DashboardSessions
    let server: @Sendable () -> String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/esb/dashboard/login" || request.uri.path.hasPrefix("/esb/dashboard/static/") {
            return try await next(request, context)
        }
        await sessions.load(for: request)
        guard let session = sessions.session(for: request) else {
            if request.method == .get || request.method == .head {
                let target = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
                return Response.redirect(to: "/esb/dashboard/login?next=" + FormData.encode(target), type: .found)
            }
            return Self.refuse("Sign in first: this request has no dashboard session.", server: server())
        }
        guard request.method == .post else { return try await next(request, context) }
        var request = request
        let form = FormData(try await request.collectBody(upTo: 16 << 20))
        guard let token = form["csrf"], token == session.csrf else {
            return Self.refuse("The form's CSRF token is missing or wrong; reload the page and try again.", server: server())
        }
        return try await next(request, context)
    }

    static func refuse(_ message: String, server: String) -> Response {
        let page = HTML.page(title: "Refused", server: server, section: "", csrf: nil,
                             HTML.notice(message, error: true) + "<p><a href=\"/esb/dashboard/login\">Sign in</a></p>")
        return Response(status: .forbidden, headers: [.contentType: "text/html; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: page)))
    }
}

/// An `application/x-www-form-urlencoded` body; a repeated name keeps its last value (so a
/// hidden `false` before a checkbox reads as the checkbox when ticked).
struct FormData {
    private(set) var values: [String: String] = [:]

    init(_ buffer: ByteBuffer) {
        self.init(String(buffer: buffer))
    }

    init(_ text: String) {
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]) else { continue }
            values[name] = parts.count > 1 ? Self.decode(parts[1]) ?? "" : ""
        }
    }

    subscript(_ name: String) -> String? { values[name] }

    static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~/")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
