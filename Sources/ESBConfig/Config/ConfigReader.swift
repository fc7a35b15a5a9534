import Foundation

/// Reads typed values out of INI sections, collecting errors and warnings with their places.
struct ConfigReader {
    let file: String
    let baseDirectory: String
    private(set) var errors: [ConfigDiagnostic] = []
    private(set) var warnings: [ConfigDiagnostic] = []

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
    }

    mutating func error(line: Int?, _ message: String) {
        errors.append(ConfigDiagnostic(.error, file: file, line: line, message))
    }

    mutating func warn(line: Int?, _ message: String) {
        warnings.append(ConfigDiagnostic(.warning, file: file, line: line, message))
    }

    /// Resolves a path against the configuration file's directory.
    func resolve(_ path: String) -> String {
        let expanded = (path as NSString).expandingTildeInPath
        let url = expanded.hasPrefix("/")
            ? URL(fileURLWithPath: expanded)
            : URL(fileURLWithPath: baseDirectory).appendingPathComponent(expanded)
        return url.standardizedFileURL.path
    }

    private mutating func bad(_ section: INIDocument.Section, _ entry: INIDocument.Entry, allowed: String) {
        error(line: entry.line, "[\(section.name)] \(entry.key) = '\(entry.value)' is not valid; allowed: \(allowed)")
    }

    mutating func string(_ section: INIDocument.Section?, _ key: String, default value: String,
                         nonEmpty: Bool = false, allowed: [String]? = nil) -> String {
        guard let section, let entry = section.entry(key) else { return value }
        if nonEmpty && entry.value.isEmpty {
            bad(section, entry, allowed: "a non-empty value")
            return value
        }
        if let allowed, !allowed.contains(entry.value) {
            bad(section, entry, allowed: allowed.joined(separator: "|"))
            return value
        }
        return entry.value
    }

    mutating func int(_ section: INIDocument.Section?, _ key: String, default value: Int,
                      in range: ClosedRange<Int>) -> Int {
        guard let section, let entry = section.entry(key) else { return value }
        guard let parsed = Int(entry.value), range.contains(parsed) else {
            bad(section, entry, allowed: "a whole number from \(range.lowerBound) to \(range.upperBound)")
            return value
        }
        return parsed
    }

    mutating func bool(_ section: INIDocument.Section?, _ key: String, default value: Bool) -> Bool {
        guard let section, let entry = section.entry(key) else { return value }
        switch entry.value.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default:
            bad(section, entry, allowed: "true|false (also yes|no, on|off, 1|0)")
            return value
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(
        _ section: INIDocument.Section?, _ key: String, default value: T
    ) -> T where T.RawValue == String {
        guard let section, let entry = section.entry(key) else { return value }
        guard let parsed = T(rawValue: entry.value.lowercased()) else {
            bad(section, entry, allowed: T.allCases.map(\.rawValue).joined(separator: "|"))
            return value
        }
        return parsed
    }

    mutating func path(_ section: INIDocument.Section?, _ key: String, default value: String) -> String {
        resolve(string(section, key, default: value, nonEmpty: true))
    }

    mutating func optionalPath(_ section: INIDocument.Section?, _ key: String) -> String? {
        let value = string(section, key, default: "")
        return value.isEmpty ? nil : resolve(value)
    }

    mutating func bindAddress(_ section: INIDocument.Section?, _ key: String,
                              default value: ServerConfig.BindAddress) -> ServerConfig.BindAddress {
        guard let section, let entry = section.entry(key) else { return value }
        let text = entry.value
        var host: Substring
        var portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                bad(section, entry, allowed: "HOST:PORT or [IPv6]:PORT")
                return value
            }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            bad(section, entry, allowed: "HOST:PORT or [IPv6]:PORT")
            return value
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else {
            bad(section, entry, allowed: "HOST:PORT with a port from 0 to 65535")
            return value
        }
        if host == "*" { host = "0.0.0.0" }
        return ServerConfig.BindAddress(host: String(host), port: port)
    }
}
