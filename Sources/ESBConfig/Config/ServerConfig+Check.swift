import Foundation

extension ServerConfig {
    /// Checks what the file refers to without starting anything: the secret key, the
    /// admin password file, startup payload files and the compiler.
    /// Returns errors and warnings, each naming the file and line it comes from.
    public func checkReferencedFiles() -> [ConfigDiagnostic] {
        var findings: [ConfigDiagnostic] = []
        func error(_ message: String, line: Int? = nil) {
            findings.append(.init(.error, file: path, line: line, message))
        }
        do {
            _ = try SecretBox(keyFile: crypto.secretKeyPath)
        } catch {
            findings.append(.init(.error, file: path, line: nil, "[crypto] secret_key_path: \(error.message)"))
        }
        do {
            _ = try AdminCredentials(config: self)
        } catch {
            findings += error.diagnostics
        }
        for entry in startupServices {
            guard case .file(let file) = entry.payload else { continue }
            if !FileManager.default.isReadableFile(atPath: file) {
                error("[startup_services] \(entry.service): payload file '\(file)' does not exist or is not readable", line: entry.line)
            }
        }
        var withSecrets = self
        do {
            try withSecrets.readSecretFiles()
        } catch {
            findings += error.diagnostics
        }
        findings += fileModeProblems()
        for file in [main.tlsCertPath, main.tlsKeyPath].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
            error("[main] TLS file '\(file)' does not exist or is not readable")
        }
        if !Self.executableExists(hotDeploy.swiftc) {
            findings.append(.init(.warning, file: path, line: nil,
                                  "[hot_deploy] swiftc '\(hotDeploy.swiftc)' is not an executable here: dropped services will fail to compile"))
        }
        return findings
    }

    static func executableExists(_ name: String) -> Bool {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) }
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        return paths.contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(name)") }
    }
}
