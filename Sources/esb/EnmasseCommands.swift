import ArgumentParser
import Foundation

/// `esb enmasse export|import`: every configuration object as one YAML or JSON file.
struct EnmasseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enmasse", abstract: "Export or import every configuration object as one file (YAML or JSON).",
        subcommands: [EnmasseExport.self, EnmasseImport.self])
}

struct EnmasseExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write every object to stdout or --output; passwords only with --include-secrets.")

    @Option(help: "yaml or json.") var format = "yaml"
    @Flag(name: .customLong("include-secrets"), help: "Include passwords (decrypted).") var includeSecrets = false
    @Option(help: "Write to this file instead of stdout.") var output: String?
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard ["yaml", "json"].contains(format) else { throw CLIError("--format must be yaml or json, not '\(format)'") }
        let client = try connection.client
        let reply = try client.expectSuccess(try await client.request(
            "GET", "/esb/api/enmasse/export?format=\(format)\(includeSecrets ? "&include_secrets=true" : "")"))
        guard let output else {
            FileHandle.standardOutput.write(reply.body)
            return
        }
        // Secrets may be inside: created readable by its owner only, never through a link, and
        // never open to others for a moment (a mode set after writing would be too late).
        let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, includeSecrets ? 0o600 : 0o644)
        guard fd >= 0 else { throw CLIError("cannot write '\(output)': \(String(cString: strerror(errno)))") }
        if includeSecrets { fchmod(fd, 0o600) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try handle.write(contentsOf: reply.body)
        } catch {
            throw CLIError("cannot write '\(output)': \(error)")
        }
    }
}

struct EnmasseImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a YAML or JSON file: checked whole, applied in one transaction, all or nothing; existing names are an error unless --replace.")

    @Argument(help: "The enmasse file.") var file: String
    @Flag(help: "Edit objects that already exist in place (nothing is ever deleted).") var replace = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file)'") }
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+")
        let name = file.addingPercentEncoding(withAllowedCharacters: allowed) ?? "file"
        let client = try connection.client
        let reply = try await client.request("POST", "/esb/api/enmasse/import?name=\(name)\(replace ? "&replace=true" : "")",
                                             body: data, contentType: "application/yaml")
        if reply.status == 422, let message = ErrorBody.message(reply.body) {
            FileHandle.standardError.write(Data((message + "\n").utf8))
            throw CLIError("nothing was imported from \(file)")
        }
        let ok = try client.expectSuccess(reply)
        let outcome = (try? JSONSerialization.jsonObject(with: ok.body)) as? [String: [String]] ?? [:]
        for object in outcome["created"] ?? [] { print("created \(object)") }
        for object in outcome["updated"] ?? [] { print("updated \(object)") }
        for warning in outcome["warnings"] ?? [] { print("warning: \(warning)") }
        print("imported \(file): \(outcome["created"]?.count ?? 0) created, \(outcome["updated"]?.count ?? 0) updated")
    }
}
