import Foundation

/// The `[admin]` username and password that guard `/esb/api` and the dashboard.
public struct AdminCredentials: Sendable, Equatable {
    public var username: String
    public var password: ServerConfig.Secret

    public init(username: String, password: String) {
        self.username = username
        self.password = .init(password)
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

    /// Compares in time independent of where the strings differ.
    public func matches(username: String, password: String) -> Bool {
        // Both comparisons always run, so timing does not tell which part was wrong.
        let userMatches = Self.constantTimeEqual(username, self.username)
        let passwordMatches = Self.constantTimeEqual(password, self.password.value)
        return userMatches && passwordMatches
    }

    private static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
