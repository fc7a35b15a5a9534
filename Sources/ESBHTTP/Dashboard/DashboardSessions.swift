import ESBCore
import Foundation
import Hummingbird
import Synchronization

/// Dashboard sign-ins: a random token in an HttpOnly, SameSite=Strict cookie (Secure under
/// TLS), and per session a CSRF token every form must carry. Sessions live in the ODB
/// (``DashboardSessionStore``), so a session works on every server of a cluster and
/// survives a restart; each server keeps the sessions in use in memory and reads them
/// again after ``recheckAfter``, so a sign-out on one server ends the session on the others
/// within that. A session ends after ``lifetime`` idle, after ``maximumAge`` whatever the
/// activity, and as soon as the admin credentials it was signed in with change (SIGHUP).
final class DashboardSessions: Sendable {
    struct Session: Sendable {
        var csrf: String
        var expires: Int64
        /// When it was signed in (seconds since 1970): it ends ``maximumAge`` later.
        var started: Int64
        /// The admin credentials it was signed in with.
        var credentials: Data
        /// When this server last read it from the ODB, and the end the ODB holds.
        var checked: ContinuousClock.Instant
        var storedExpires: Int64
    }

    static let cookieName = "esb_session"
    /// The CSRF token of the sign-in form itself, before any session exists (double submit).
    static let loginCookieName = "esb_login_csrf"
    /// Idle sessions end after this long (seconds).
    static let lifetime: Int64 = 8 * 3600
    /// Every session ends this long after sign-in (seconds).
    static let maximumAge: Int64 = 12 * 3600
    /// How long a session read from the ODB is trusted before it is read again.
    static let recheckAfter: Duration = .seconds(5)
    /// The most sessions kept in memory; the ODB holds them all.
    static let maximumCached = 1000

    private let cache = Mutex<[String: Session]>([:])
    private let state: ServerState
    private let store: DashboardSessionStore

    init(state: ServerState) {
        self.state = state
        store = DashboardSessionStore(odb: state.odb)
    }

    /// Whether cookies carry `Secure` (the listener speaks HTTPS).
    var secure: Bool { state.config.main.usesTLS }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// 32 random bytes as hex.
    static func token() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next(), radix: 16).leftPadded(to: 16) }.joined()
    }

    /// Starts a session; returns its token.
    /// - Throws: when the ODB cannot store it (the sign-in fails: `odb.unavailable`).
    func create() async throws -> String {
        let token = Self.token()
        let now = Self.now()
        let stored = DashboardSessionStore.Session(csrf: Self.token(), credentials: state.credentials.fingerprint(state.secrets),
                                                   startedAt: now, expiresAt: now + Self.lifetime)
        try await store.insert(token: token, stored, now: now)
        remember(token, stored)
        return token
    }

    /// Keeps `stored` in memory; `storedExpires` is the end the ODB holds (renewals past it
    /// are written back).
    private func remember(_ token: String, _ stored: DashboardSessionStore.Session, storedExpires: Int64? = nil) {
        cache.withLock { cache in
            if cache.count >= Self.maximumCached, let oldest = cache.min(by: { $0.value.checked < $1.value.checked }) {
                cache[oldest.key] = nil
            }
            cache[token] = Session(csrf: stored.csrf, expires: stored.expiresAt, started: stored.startedAt,
                                   credentials: stored.credentials, checked: .now, storedExpires: storedExpires ?? stored.expiresAt)
        }
    }

    /// Makes the request's session current for ``session(for:)``: reads it from the ODB when
    /// this server does not know it or last read it over ``recheckAfter`` ago, and writes its
    /// renewed end back at most once a minute. With the ODB unreachable, a session this
    /// server knows keeps working.
    func load(for request: Request) async {
        // Only what ``token()`` makes is looked up: anything else costs no query.
        guard let token = Self.cookie(Self.cookieName, in: request), token.count == 64,
              token.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return }
        let known = cache.withLock { $0[token] }
        if let known, ContinuousClock.now - known.checked < Self.recheckAfter {
            if known.expires - known.storedExpires >= 60, (try? await store.renew(token: token, expiresAt: known.expires)) != nil {
                cache.withLock { $0[token]?.storedExpires = known.expires }
            }
            return
        }
        do {
            guard var stored = try await store.session(token: token) else {
                cache.withLock { $0[token] = nil }
                return
            }
            let held = stored.expiresAt
            if let known { stored.expiresAt = max(stored.expiresAt, known.expires) }
            remember(token, stored, storedExpires: held)
        } catch {
            // Keep what this server knows; unknown sessions wait for the ODB.
        }
    }

    /// The live session of a request (its lifetime renewed), if it has one. Reads what
    /// ``load(for:)`` made current.
    func session(for request: Request) -> Session? {
        guard let token = Self.cookie(Self.cookieName, in: request) else { return nil }
        let credentials = state.credentials.fingerprint(state.secrets)
        let now = Self.now()
        return cache.withLock { cache in
            guard var session = cache[token], session.expires > now, now - session.started < Self.maximumAge,
                  session.credentials == credentials else {
                cache[token] = nil
                return nil
            }
            session.expires = now + Self.lifetime
            cache[token] = session
            return session
        }
    }

    /// Signs the request's session out on every server (the others notice within ``recheckAfter``).
    /// - Throws: when the ODB cannot delete it: the sign-out did not happen (the caller says so).
    func end(for request: Request) async throws {
        guard let token = Self.cookie(Self.cookieName, in: request) else { return }
        try await store.delete(token: token)
        cache.withLock { $0[token] = nil }
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
