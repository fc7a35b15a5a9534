import ArgumentParser
import Foundation

/// How to reach a running server: flags, else `ESB_URL`, `ESB_USER`, `ESB_PASSWORD`.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server URL (default: $ESB_URL or http://127.0.0.1:17010).")
    var url: String?
    @Option(help: "Admin user (default: $ESB_USER or admin).")
    var user: String?
    @Option(help: "Admin password (default: $ESB_PASSWORD).")
    var password: String?

    var client: AdminClient {
        let environment = ProcessInfo.processInfo.environment
        return AdminClient(
            baseURL: url ?? environment["ESB_URL"] ?? "http://127.0.0.1:17010",
            user: user ?? environment["ESB_USER"] ?? "admin",
            password: password ?? environment["ESB_PASSWORD"] ?? "")
    }
}

/// A one-line failure printed to stderr with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
