import Foundation

extension ServerConfig {
    /// Reads the secrets server.conf keeps in files of their own (`[kvdb] password_file`),
    /// at start and on every reload.
    /// - Throws: ``ConfigError`` naming the key and the file that cannot be read or is empty.
    public mutating func readSecretFiles() throws(ConfigError) {
        if let file = kvdb?.passwordFile {
            let password = try readPassword(file, key: "[kvdb] password_file", of: "Redis")
            kvdb?.password = password
        }
        if odb.engine == .postgresql, let file = odb.passwordFile {
            let password = try readPassword(file, key: "[odb] password_file", of: "PostgreSQL")
            odb.password = password
        }
    }

    /// The first line of a password file, which must not be empty.
    private func readPassword(_ file: String, key: String, of server: String) throws(ConfigError) -> Secret {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, "\(key) '\(file)' cannot be read (\(Self.reason(error)))")
        }
        let password = text.trimmingCharacters(in: .newlines)
        guard !password.isEmpty else {
            throw ConfigError(file: path, "\(key) '\(file)' is empty; write the \(server) password into it")
        }
        return Secret(password)
    }

    /// Files and directories whose modes would let another local user take over the server
    /// at start and on reload: the pickup and work directories must not be writable by
    /// others; the secret key, the TLS key and password files not writable by group or
    /// others, nor readable by others (`root:esb 0640` is fine). Parent directories are not
    /// checked; a path that does not exist yet is left to the code that reads or creates it.
    public func fileModeProblems() -> [ConfigDiagnostic] {
        var problems: [String] = []
        var directories = [("[main] work_dir", main.workDir), ("[hot_deploy] pickup_dir", hotDeploy.pickupDir)]
        let libraries = hotDeploy.pickupDir + "/lib"
        directories.append(("[hot_deploy] pickup_dir's lib", libraries))
        for name in (try? FileManager.default.contentsOfDirectory(atPath: libraries)) ?? [] {
            directories.append(("[hot_deploy] pickup_dir's library", libraries + "/" + name))
        }
        for (key, directory) in directories {
            if let mode = Self.mode(of: directory), mode & 0o002 != 0 {
                problems.append("\(key) '\(directory)' has mode \(Self.octal(mode)): writable by others, so anyone on the host could deploy code; chmod o-w it")
            }
        }
        var secrets = [("[crypto] secret_key_path", crypto.secretKeyPath), ("[admin] password_file", admin.passwordFile)]
        if let key = main.tlsKeyPath { secrets.append(("[main] tls_key_path", key)) }
        if let file = kvdb?.passwordFile { secrets.append(("[kvdb] password_file", file)) }
        if let file = odb.passwordFile { secrets.append(("[odb] password_file", file)) }
        for (key, file) in secrets {
            guard let mode = Self.mode(of: file) else { continue }
            var faults: [String] = []
            if mode & 0o022 != 0 { faults.append("writable by \(mode & 0o020 != 0 ? "group" : "others")") }
            if mode & 0o004 != 0 { faults.append("readable by others") }
            if !faults.isEmpty {
                problems.append("\(key) '\(file)' has mode \(Self.octal(mode)): \(faults.joined(separator: " and ")); chmod 0600 it (or 0640 for a service group)")
            }
        }
        return problems.map { ConfigDiagnostic(.error, file: path, line: nil, $0) }
    }

    /// The permission bits of `path` (symlinks followed), or nil when it does not exist.
    static func mode(of path: String) -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
