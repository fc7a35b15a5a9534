import ESBCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import Logging
import Synchronization

/// Checks sign-ins and throttles password guessing: after more than
/// ``failureLimit`` failed sign-ins from one client address within a minute, counted per
/// realm (`admin` for the admin API and dashboard together, `def_sec:NAME` for each channel
/// security definition), that address gets 429 in that realm until the minute is over,
/// right credentials included. A request without credentials is a challenge, not a failure.
/// Every failure is logged at warning level with the address, user name and path, never the
/// password. Counters are per server, in memory, bounded (the oldest go first).
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
    ///
    /// The attempt counts as a failure before it is verified, in the same critical section as
    /// the throttle check, and is taken back when it succeeds: a burst of concurrent guesses
    /// gets no more tries than a sequence.
    func check(realm: String, address: String, path: String, credentials: (username: String, password: String)?,
               verify: (String, String) -> Bool) -> Outcome {
        let key = Key(realm: realm, address: Self.throttlingKey(address))
        let now = ContinuousClock.now
        let reserved: Result<Void, ThrottledError> = windows.withLock { windows in
            if let retryAfter = Self.throttled(&windows, key, now: now) { return .failure(ThrottledError(retryAfter: retryAfter)) }
            guard credentials != nil else { return .success(()) }
            Self.recordFailure(&windows, key, now: now)
            return .success(())
        }
        if case .failure(let throttled) = reserved { return .throttled(retryAfter: throttled.retryAfter) }
        guard let credentials else { return .challenge }
        if verify(credentials.username, credentials.password) {
            windows.withLock { windows in
                if var window = windows[key], window.failures > 0 {
                    window.failures -= 1
                    windows[key] = window
                }
            }
            return .accepted
        }
        logger.warning("sign-in failed", metadata: [
            "esb.realm": "\(realm)", "esb.client": "\(address)", "esb.user": "\(credentials.username)", "esb.path": "\(path)",
        ])
        return .refused
    }

    private struct ThrottledError: Error { var retryAfter: Int }

    /// IPv6 clients are counted by their /64, which one host usually holds whole; IPv4 by address.
    static func throttlingKey(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        return bytes.prefix(8).map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
    }

    private static func throttled(_ windows: inout [Key: Window], _ key: Key, now: ContinuousClock.Instant) -> Int? {
        guard let window = windows[key] else { return nil }
        let end = window.start + Self.window
        guard now < end else {
            windows[key] = nil
            return nil
        }
        guard window.failures > Self.failureLimit else { return nil }
        let (seconds, attoseconds) = (end - now).components
        return Int(seconds) + (attoseconds > 0 ? 1 : 0)
    }

    private static func recordFailure(_ windows: inout [Key: Window], _ key: Key, now: ContinuousClock.Instant) {
        if windows.count >= Self.maximumTracked {
            windows = windows.filter { now < $0.value.start + Self.window }
            if windows.count >= Self.maximumTracked {
                // Still full of live windows: the oldest tenth goes, not every counter at once.
                let oldest = windows.sorted { $0.value.start < $1.value.start }.prefix(Self.maximumTracked / 10).map(\.key)
                for stale in oldest { windows[stale] = nil }
            }
        }
        if var window = windows[key], now < window.start + Self.window {
            window.failures += 1
            windows[key] = window
        } else {
            windows[key] = Window(start: now, failures: 1)
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
