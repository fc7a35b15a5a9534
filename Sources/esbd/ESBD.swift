import ArgumentParser
import Foundation

/// `esbd --config PATH`: the SwiftESB server, in the foreground, logging to stderr.
@main
struct ESBD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "esbd",
        abstract: "The SwiftESB server: services, channels, outgoing connections, admin API.")

    @Option(name: .long, help: "Path of server.conf.")
    var config: String

    func run() async throws {
        let status = await Daemon.run(configPath: config)
        if status != 0 { throw ExitCode(status) }
    }
}
