import ArgumentParser
import Foundation

/// How to reach a running server: flags, else `ESB_URL`, `ESB_USER`, `ESB_PASSWORD`
/// (or `ESB_PASSWORD_FILE`), `ESB_CACERT`.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server URL (default: $ESB_URL or http://127.0.0.1:17010).")
    var url: String?
    @Option(help: "Admin user (default: $ESB_USER or admin).")
    var user: String?
    @Option(help: "Admin password; @FILE reads it from a file, - from standard input (default: $ESB_PASSWORD, or the file $ESB_PASSWORD_FILE).")
    var password: String?
    @Option(help: "PEM file of the CA (or self-signed certificate) a TLS listener is checked against (default: $ESB_CACERT, else the system's CAs).")
    var cacert: String?

    var client: AdminClient {
        get throws {
            let environment = ProcessInfo.processInfo.environment
            let secret: String
            if let password {
                secret = try SecretArgument.resolve(password, what: "--password")
            } else if let file = environment["ESB_PASSWORD_FILE"] {
                secret = try SecretArgument.resolve("@" + file, what: "ESB_PASSWORD_FILE")
            } else {
                secret = environment["ESB_PASSWORD"] ?? ""
            }
            return AdminClient(
                baseURL: url ?? environment["ESB_URL"] ?? "http://127.0.0.1:17010",
                user: user ?? environment["ESB_USER"] ?? "admin",
                password: secret,
                cacert: cacert ?? environment["ESB_CACERT"])
        }
    }
}

/// A secret given on the command line without showing it to `ps` or the shell history:
/// `@FILE` reads a file, `-` standard input (one trailing newline dropped); anything else is
/// the secret itself.
enum SecretArgument {
    static func resolve(_ value: String, what: String) throws -> String {
        let data: Data
        if value == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else if value.hasPrefix("@") {
            let path = String(value.dropFirst())
            guard let contents = FileManager.default.contents(atPath: path) else {
                // Not naming the path: it may be a password that happens to start with '@'.
                throw CLIError("\(what): '@…' names a file to read the secret from, and that file cannot be read (a secret starting with '@' goes in a file or standard input)")
            }
            data = contents
        } else {
            return value
        }
        var text = String(decoding: data, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        if text.hasSuffix("\r") { text.removeLast() }
        return text
    }
}

/// Percent-encoding for what `esb` puts into URLs: object and service names may hold `/`, `?`,
/// `#` or spaces, which must not change the path they are sent to.
enum URLText {
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// A one-line failure printed to stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
