import Crypto
import Foundation

/// The `[admin]` username and password that guard `/esb/api` and the dashboard.
public struct AdminCredentials: Sendable, Equatable {
    public let username: String
    public let password: ServerConfig.Secret
    /// Both as digests, made once: every admin request compares against them.
    private let usernameDigest: SecretDigest
    private let passwordDigest: SecretDigest

    public init(username: String, password: String) {
        self.username = username
        self.password = .init(password)
        usernameDigest = SecretDigest(username)
        passwordDigest = SecretDigest(password)
    }

    /// Reads the password file named by `[admin] password_file` (one line; a trailing newline is dropped).
    /// - Throws: ``ConfigError`` naming the file and what is wrong with it.
    public init(config: ServerConfig) throws(ConfigError) {
        let file = config.admin.passwordFile
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: config.path, "[admin] password_file '\(file)' cannot be read (\(ServerConfig.reason(error))); write the admin password into it")
        }
        let password = text.trimmingCharacters(in: .newlines)
        guard !password.isEmpty else {
            throw ConfigError(file: config.path, "[admin] password_file '\(file)' is empty; write the admin password into it")
        }
        self.init(username: config.admin.username, password: password)
    }

    /// Compares in constant time (``SecretDigest``): timing tells neither which part was wrong
    /// nor how much of it matched.
    public func matches(username: String, password: String) -> Bool {
        let userMatches = usernameDigest.matches(username)
        let passwordMatches = passwordDigest.matches(password)
        return userMatches && passwordMatches
    }

    /// Both credentials, keyed with `secrets` (never a plain digest an ODB reader could try
    /// passwords against): sessions signed in under other credentials end when it changes.
    public func fingerprint(_ secrets: SecretBox) -> Data {
        secrets.authenticationCode(Data((username + "\u{0}" + password.value).utf8), purpose: "esb dashboard session credentials")
    }

    static func digest(_ text: String) -> SHA256Digest { SHA256.hash(data: Data(text.utf8)) }
}
