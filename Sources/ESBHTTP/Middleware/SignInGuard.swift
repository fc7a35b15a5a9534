import ESBCore
import Foundation
import Hummingbird
import Logging
import Synchronization

/// Checks sign-ins and throttles guessing (INTERFACES.md §7 "Guessing"): after
/// ``failureLimit`` failed sign-ins from one client address within a minute, counted per
/// realm (`admin` for the admin API and dashboard together, `def_sec:NAME` for each channel
/// security definition), that address gets 429 in that realm until the minute is over,
/// right credentials included. A request without credentials is a challenge, not a failure.
/// Every failure is logged at warning level with the address, user name and path, never the
/// password. Counters are per server, in memory.
final class SignInGuard: Sendable {
    static let failureLimit = 10
    static let window: Duration = .seconds(60)
    /// Beyond this many tracked (realm, address) pairs the expired ones are dropped, then the oldest.
    static let maximumTracked = 100_000

    enum Outcome: Equatable {
        case accepted
        /// No credentials were sent.
        case challenge
        case refused
        /// Too many failures: wait this many seconds.
        case throttled(retryAfter: Int)
    }

    private struct Key: Hashable {
        var realm: String
        var address: String
    }
    private struct Window {
        var start: ContinuousClock.Instant
        var failures: Int
    }
    private let windows = Mutex<[Key: Window]>([:])
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Checks `credentials` with `verify` unless the address is throttled in `realm`.
    func check(realm: String, address: String, path: String, credentials: (username: String, password: String)?,
               verify: (String, String) -> Bool) -> Outcome {
        let key = Key(realm: realm, address: address)
        let now = ContinuousClock.now
        if let retryAfter = throttled(key, now: now) { return .throttled(retryAfter: retryAfter) }
        guard let credentials else { return .challenge }
        if verify(credentials.username, credentials.password) { return .accepted }
        recordFailure(key, now: now)
        logger.warning("sign-in failed", metadata: [
            "esb.realm": "\(realm)", "esb.client": "\(address)", "esb.user": "\(credentials.username)", "esb.path": "\(path)",
        ])
        return .refused
    }

    private func throttled(_ key: Key, now: ContinuousClock.Instant) -> Int? {
        windows.withLock { windows in
            guard let window = windows[key] else { return nil }
            let end = window.start + Self.window
            guard now < end else {
                windows[key] = nil
                return nil
            }
            guard window.failures >= Self.failureLimit else { return nil }
            let (seconds, attoseconds) = (end - now).components
            return Int(seconds) + (attoseconds > 0 ? 1 : 0)
        }
    }

    private func recordFailure(_ key: Key, now: ContinuousClock.Instant) {
        windows.withLock { windows in
            if windows.count >= Self.maximumTracked {
                windows = windows.filter { now < $0.value.start + Self.window }
                if windows.count >= Self.maximumTracked { windows.removeAll(keepingCapacity: true) }
            }
            if var window = windows[key], now < window.start + Self.window {
                window.failures += 1
                windows[key] = window
            } else {
                windows[key] = Window(start: now, failures: 1)
            }
        }
    }

    /// The user name and password of an `Authorization: Basic` header, if it has one.
    static func basicCredentials(_ request: Request) -> (username: String, password: String)? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic", parts[1].utf8.count <= 4096,
              let decoded = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
              let text = String(data: decoded, encoding: .utf8),
              let colon = text.firstIndex(of: ":")
        else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }
}

extension APIError {
    /// 429 `auth.throttled` with `Retry-After`.
    static func throttled(retryAfter: Int) -> APIError {
        var error = APIError(.tooManyRequests, code: "auth.throttled",
                             "too many failed sign-ins from this address; try again in \(retryAfter) s")
        error.headers[.retryAfter] = String(retryAfter)
        return error
    }
}
