import ArgumentParser
import Foundation

struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy", abstract: "Deploy a .swift (or .so) file, as a drop into the pickup directory; waits for the result.")

    @Argument(help: "The service file.") var file: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read '\(file)'") }
        let name = (file as NSString).lastPathComponent
        let client = try connection.client
        let reply = try await client.request("POST", "/esb/api/deploy?name=\(URLText.segment(name))", body: data, contentType: "text/x-swift")
        if reply.status == 422, let message = ErrorBody.message(reply.body) {
            FileHandle.standardError.write(Data((message + "\n").utf8))
            throw CLIError("deployment of \(name) failed")
        }
        let ok = try client.expectSuccess(reply)
        let object = (try? JSONSerialization.jsonObject(with: ok.body)) as? [String: Any]
        let services = (object?["services"] as? [String])?.joined(separator: ", ") ?? ""
        print("deployed \(name): \(services)")
    }
}

struct InvokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invoke", abstract: "Invoke a service and print its response body.")

    @Argument(help: "The service name.") var service: String
    @Option(help: "The payload as text.") var payload: String?
    @Option(name: .customLong("payload-file"), help: "Read the payload from a file.") var payloadFile: String?
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        var body = Data((payload ?? "").utf8)
        if let payloadFile {
            guard payload == nil else { throw CLIError("give --payload or --payload-file, not both") }
            guard let data = FileManager.default.contents(atPath: payloadFile) else { throw CLIError("cannot read '\(payloadFile)'") }
            body = data
        }
        let client = try connection.client
        let reply = try client.expectSuccess(try await client.request("POST", "/esb/api/invoke/\(URLText.segment(service))", body: body))
        FileHandle.standardOutput.write(reply.body)
        if !reply.body.isEmpty && reply.body.last != UInt8(ascii: "\n") { print() }
    }
}

struct ServicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "services", abstract: "List deployed services.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let rows = try await connection.client.list("/esb/api/services")
        Table.print(["NAME", "UNIT", "KIND"], rows.map { [$0["name"], $0["unit"], $0["kind"]].map { "\($0 ?? "")" } })
    }
}

struct DeploymentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deployments", abstract: "List deployment units and their status.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let rows = try await connection.client.list("/esb/api/deployments")
        Table.print(["UNIT", "KIND", "STATUS", "VERSION", "SERVICES / DEPENDENTS", "IMPORTS", "SERVERS", "ERROR"], rows.map { row in
            let kind = "\(row["kind"] ?? "")"
            let listed = (row[kind == "library" ? "dependents" : "services"] as? [String] ?? []).joined(separator: ",")
            let imports = (row["imports"] as? [String] ?? []).joined(separator: ",")
            // name=status per server; `(behind)` where it has yet to follow the serving version.
            let servers = (row["servers"] as? [[String: Any]] ?? []).map { server in
                "\(server["name"] ?? "")=\(server["status"] ?? "")" + (server["current"] as? Bool == false ? "(behind)" : "")
            }.joined(separator: ",")
            let error = (row["error"] as? String)?.split(separator: "\n").first.map(String.init) ?? ""
            return ["\(row["name"] ?? "")", kind, "\(row["status"] ?? "")", "\(row["version"] as? Int ?? 0)", listed, imports,
                    servers, error]
        })
    }
}

enum ErrorBody {
    static func message(_ body: Data) -> String? {
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["message"] as? String
    }
}

enum Table {
    static func print(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            Swift.print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "List the servers of the cluster: address, version, status, last heartbeat.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let rows = try await connection.client.list("/esb/api/cluster")
        Table.print(["NAME", "STATUS", "ADDRESS", "VERSION", "STARTED", "LAST SEEN"], rows.map { row in
            ["name", "status", "address", "version", "started_at", "last_seen"].map { "\(row[$0] as? String ?? "")" }
        })
    }
}

struct AsyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "async", abstract: "Show an async invocation or invoke/retry: status, attempts, next run, last error.")

    @Argument(help: "The cid invokeAsync or invokeRetry returned.") var cid: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove("/")
        try await connection.client.show("GET", "/esb/api/async/" + (cid.addingPercentEncoding(withAllowedCharacters: allowed) ?? cid))
    }
}
