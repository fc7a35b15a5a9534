import ESBCore
import Foundation
import Hummingbird
import Synchronization

/// Dashboard sign-ins: a random token in an HttpOnly, SameSite=Strict cookie (Secure under
/// TLS), and per session a CSRF token every form must carry. Kept in memory: a restart signs
/// everyone out. A session ends after ``lifetime`` idle, after ``maximumAge`` whatever the
/// activity, and as soon as the admin credentials it was signed in with change (SIGHUP).
final class DashboardSessions: Sendable {
    struct Session: Sendable {
        var csrf: String
        var expires: ContinuousClock.Instant
        /// When it was signed in: it ends ``maximumAge`` later.
        var started: ContinuousClock.Instant
        /// The admin credentials it was signed in with.
        var credentials: Data
    }

    static let cookieName = "esb_session"
    /// The CSRF token of the sign-in form itself, before any session exists (double submit).
    static let loginCookieName = "esb_login_csrf"
    /// Idle sessions end after this long.
    static let lifetime: Duration = .seconds(8 * 3600)
    /// Every session ends this long after sign-in.
    static let maximumAge: Duration = .seconds(12 * 3600)
    static let maximumSessions = 1000

    private let sessions = Mutex<[String: Session]>([:])
    private let state: ServerState

    init(state: ServerState) {
        self.state = state
    }

    /// Whether cookies carry `Secure` (the listener speaks HTTPS).
    var secure: Bool { state.config.main.usesTLS }

    /// 32 random bytes as hex.
    static func token() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next(), radix: 16).leftPadded(to: 16) }.joined()
    }

    /// Starts a session; returns its token.
    func create() -> String {
        let token = Self.token()
        sessions.withLock { sessions in
            let now = ContinuousClock.now
            sessions = sessions.filter { $0.value.expires > now }
            if sessions.count >= Self.maximumSessions, let oldest = sessions.min(by: { $0.value.expires < $1.value.expires }) {
                sessions[oldest.key] = nil
            }
            sessions[token] = Session(csrf: Self.token(), expires: now + Self.lifetime, started: now,
                                      credentials: state.credentials.fingerprint)
        }
        return token
    }

    /// The live session of a request (its lifetime renewed), if it has one.
    func session(for request: Request) -> Session? {
        guard let token = Self.cookie(Self.cookieName, in: request) else { return nil }
        let credentials = state.credentials.fingerprint
        return sessions.withLock { sessions in
            let now = ContinuousClock.now
            guard var session = sessions[token], session.expires > now, now - session.started < Self.maximumAge,
                  session.credentials == credentials else {
                sessions[token] = nil
                return nil
            }
            session.expires = .now + Self.lifetime
            sessions[token] = session
            return session
        }
    }

    func end(for request: Request) {
        guard let token = Self.cookie(Self.cookieName, in: request) else { return }
        sessions.withLock { $0[token] = nil }
    }

    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name {
                    return parts[1].trimmingCharacters(in: .whitespaces)
                }
            }
        }
        return nil
    }

    /// `Set-Cookie` for the dashboard's paths; `maxAge` 0 deletes it.
    func setCookie(_ name: String, _ value: String, maxAge: Int? = nil) -> String {
        var cookie = "\(name)=\(value); Path=/esb/dashboard; HttpOnly; SameSite=Strict"
        if secure { cookie += "; Secure" }
        if let maxAge { cookie += "; Max-Age=\(maxAge)" }
        return cookie
    }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
