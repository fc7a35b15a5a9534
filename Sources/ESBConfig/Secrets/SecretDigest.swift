import Crypto
import Foundation

/// A secret kept only as an HMAC under a key drawn at random per process, and compared with
/// swift-crypto's constant-time check: timing tells an attacker neither which part of a
/// sign-in was wrong nor how much of it matched.
public struct SecretDigest: Sendable, Equatable {
    private let mac: [UInt8]

    public init(_ secret: String) {
        mac = Array(HMAC<SHA256>.authenticationCode(for: Data(secret.utf8), using: Self.key))
    }

    /// Whether `candidate` is the secret, in time independent of where they differ.
    public func matches(_ candidate: String) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data(candidate.utf8), using: Self.key)
    }

    private static let keyBytes: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }()
    private static var key: SymmetricKey { SymmetricKey(data: keyBytes) }
}
