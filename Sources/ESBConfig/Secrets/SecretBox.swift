import Crypto
import Foundation

/// Encrypts and decrypts stored secrets (AMQP, basic-auth, outgoing HTTP passwords) with
/// the `[crypto]` key, AES-256-GCM. Encrypted, not hashed: outgoing connections and
/// enmasse need the plain value back.
///
/// A sealed value is `v1:` followed by base64 of nonce, ciphertext and tag.
public struct SecretBox: Sendable {
    /// Size of a key file in bytes.
    public static let keyByteCount = 32
    private static let prefix = "v1:"

    // SymmetricKey is not Sendable in swift-crypto 3; keep the bytes and wrap per call.
    private let keyBytes: Data
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    /// Wraps raw key bytes.
    /// - Throws: ``SecretError`` when the key is not 32 bytes.
    public init(keyBytes: Data) throws(SecretError) {
        guard keyBytes.count == Self.keyByteCount else {
            throw SecretError("a secret key must be \(Self.keyByteCount) bytes, found \(keyBytes.count)")
        }
        self.keyBytes = keyBytes
    }

    /// Loads the key file written by `esb create-key`.
    /// - Throws: ``SecretError`` naming the file and the cause.
    public init(keyFile path: String) throws(SecretError) {
        let bytes: Data
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SecretError("secret key '\(path)' cannot be read (\(ServerConfig.reason(error))); create it with `esb create-key \(path)`")
        }
        do {
            try self.init(keyBytes: bytes)
        } catch {
            throw SecretError("secret key '\(path)': \(error.message); create a new one with `esb create-key PATH`")
        }
    }

    /// Encrypts a secret for storage.
    public func seal(_ plaintext: String) throws(SecretError) -> String {
        do {
            let box = try AES.GCM.seal(Data(plaintext.utf8), using: key)
            guard let combined = box.combined else { throw SecretError("AES-GCM produced no output") }
            return Self.prefix + combined.base64EncodedString()
        } catch let error as SecretError {
            throw error
        } catch {
            throw SecretError("cannot encrypt: \(error)")
        }
    }

    /// Decrypts a value made by ``seal(_:)``.
    /// - Throws: ``SecretError`` when the value is malformed or was sealed with another key.
    /// An HMAC of `data` under a key derived from this key for `purpose`: what the ODB keeps
    /// instead of a plain digest of something guessable (an admin password), so that reading
    /// the ODB without the key file gives nothing to try guesses against.
    public func authenticationCode(_ data: Data, purpose: String) -> Data {
        let derived = HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data(purpose.utf8), outputByteCount: 32)
        return Data(HMAC<SHA256>.authenticationCode(for: data, using: derived))
    }

    public func open(_ sealed: String) throws(SecretError) -> String {
        guard sealed.hasPrefix(Self.prefix), let combined = Data(base64Encoded: String(sealed.dropFirst(Self.prefix.count))) else {
            throw SecretError("stored secret is not in the v1 format")
        }
        do {
            let plain = try AES.GCM.open(AES.GCM.SealedBox(combined: combined), using: key)
            guard let text = String(data: plain, encoding: .utf8) else { throw SecretError("stored secret is not UTF-8") }
            return text
        } catch let error as SecretError {
            throw error
        } catch {
            throw SecretError("stored secret cannot be decrypted with this key (was the key replaced?)")
        }
    }

    /// Writes a new random key file with mode 0600; refuses to overwrite an existing file.
    public static func createKeyFile(at path: String) throws(SecretError) {
        var generator = SystemRandomNumberGenerator()
        let bytes = Data((0..<keyByteCount).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let cause = String(cString: strerror(errno))
            throw SecretError("cannot create key file '\(path)': \(cause)")
        }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == keyByteCount, fsync(fd) == 0 else {
            throw SecretError("cannot write key file '\(path)': \(String(cString: strerror(errno)))")
        }
    }
}

/// A secret could not be loaded, sealed or opened.
public struct SecretError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
