import ArgumentParser
import ESBConfig
import Foundation

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with server.conf offline.",
        subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate server.conf and the files it names, without starting anything.")

        @Argument(help: "Path of server.conf.")
        var path: String

        func run() async throws {
            var findings: [ConfigDiagnostic]
            do {
                let loaded = try ServerConfig.load(path: path)
                findings = loaded.warnings + loaded.config.checkReferencedFiles()
            } catch {
                findings = error.diagnostics
            }
            for finding in findings { print(finding) }
            let errors = findings.filter { $0.severity == .error }.count
            if errors > 0 {
                FileHandle.standardError.write(Data("esb: \(path): \(errors) error(s)\n".utf8))
                throw ExitCode(1)
            }
            print("\(path): OK")
        }
    }
}

struct CreateKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-key",
        abstract: "Write a new 32-byte secret key (mode 0600) for [crypto] secret_key_path.")

    @Argument(help: "Where to write the key; an existing file is never overwritten.")
    var path: String

    func run() async throws {
        do {
            try SecretBox.createKeyFile(at: path)
        } catch {
            throw CLIError(error.message)
        }
        print("created \(path)")
    }
}

struct PingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ping", abstract: "Check that the server answers.")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let client = try connection.client
        let reply = try client.expectSuccess(try await client.request("GET", "/esb/ping", authenticated: false))
        print(reply.text)
    }
}
