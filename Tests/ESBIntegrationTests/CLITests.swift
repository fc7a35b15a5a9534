import Foundation
import Testing

/// `esb` against real files and a real esbd.
@Suite struct CLITests {
    /// The shipped example, copied with the key and password file it names.
    func exampleCopy() async throws -> String {
        let directory = TestEnvironment.temporaryDirectory("example")
        let config = directory + "/server.conf"
        try FileManager.default.copyItem(atPath: TestEnvironment.packageRoot + "/server.conf.example", toPath: config)
        try FileManager.default.createDirectory(atPath: directory + "/config/payloads", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestEnvironment.packageRoot + "/config/payloads/hello.json",
                                         toPath: directory + "/config/payloads/hello.json")
        #expect(try await runCommand(TestEnvironment.esb, ["create-key", directory + "/secret.key"]).status == 0)
        try writeSecretFile("pw\n", to: directory + "/admin.password")
        return config
    }

    @Test func configCheckAcceptsTheExample() async throws {
        let config = try await exampleCopy()
        let result = try await runCommand(TestEnvironment.esb, ["config", "check", config])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("\(config): OK"))
    }

    @Test func configCheckReportsEveryErrorWithFileAndLine() async throws {
        let config = try await exampleCopy()
        var text = try String(contentsOfFile: config, encoding: .utf8)
        text = text.replacingOccurrences(of: "log_level = info", with: "log_level = loud")
        text = text.replacingOccurrences(of: "pool_size = 4", with: "pool_size = many")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try await runCommand(TestEnvironment.esb, ["config", "check", config])
        #expect(result.status == 1)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let logLine = lines.firstIndex { $0.hasPrefix("log_level") }! + 1
        let poolLine = lines.firstIndex { $0.hasPrefix("pool_size") }! + 1
        #expect(result.stdout.contains("\(config):\(logLine): error: [main] log_level = 'loud' is not valid"))
        #expect(result.stdout.contains("\(config):\(poolLine): error: [kvdb] pool_size = 'many' is not valid"))
        #expect(result.stderr.contains("2 error(s)"))
    }

    @Test func configCheckReportsMissingPayloadKeyAndPasswordFiles() async throws {
        let config = try await exampleCopy()
        let directory = (config as NSString).deletingLastPathComponent
        try FileManager.default.removeItem(atPath: directory + "/config/payloads/hello.json")
        try FileManager.default.removeItem(atPath: directory + "/secret.key")
        try FileManager.default.removeItem(atPath: directory + "/admin.password")
        let result = try await runCommand(TestEnvironment.esb, ["config", "check", config])
        #expect(result.status == 1)
        #expect(result.stdout.contains("payload file '\(directory)/config/payloads/hello.json' does not exist"))
        #expect(result.stdout.contains("[crypto] secret_key_path"))
        #expect(result.stdout.contains("[admin] password_file"))
    }

    @Test func createKeyWrites32BytesWithMode0600AndRefusesToOverwrite() async throws {
        let path = TestEnvironment.temporaryDirectory("key") + "/secret.key"
        #expect(try await runCommand(TestEnvironment.esb, ["create-key", path]).status == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((attributes[.size] as? Int) == 32)
        let again = try await runCommand(TestEnvironment.esb, ["create-key", path])
        #expect(again.status != 0)
        #expect(again.stderr.contains("File exists"))
    }

    @Test func pingUsesFlagsOrEnvironment() async throws {
        let server = try TestServer(name: "cli-ping")
        try await server.start()
        defer { Task { await server.stop() } }
        let byFlag = try await runCommand(TestEnvironment.esb, ["ping", "--url", "http://127.0.0.1:\(server.port)"])
        #expect(byFlag.status == 0)
        #expect(byFlag.stdout.contains(#""server":"cli-ping""#))
        var environment = ProcessInfo.processInfo.environment
        environment["ESB_URL"] = "http://127.0.0.1:\(server.port)"
        let byEnvironment = try await runCommand(TestEnvironment.esb, ["ping"], environment: environment)
        #expect(byEnvironment.status == 0)

        let down = try await runCommand(TestEnvironment.esb, ["ping", "--url", "http://127.0.0.1:\(TestEnvironment.freePort())"])
        #expect(down.status != 0)
        #expect(down.stderr.contains("cannot reach"))
        #expect(down.stderr.split(separator: "\n").count == 1, "one line: \(down.stderr)")
    }

    @Test func deployInvokeAndListFromTheCommandLine() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let connection = ["--url", "http://127.0.0.1:\(server.port)", "--password", server.password]
        let file = server.directory + "/cli.swift"
        try PluginFixture.serviceSource(typeName: "Cli", serviceName: "cli.hello", body: #".text("hello \(request.text)")"#)
            .write(toFile: file, atomically: true, encoding: .utf8)
        let deployed = try await runCommand(TestEnvironment.esb, ["deploy", file] + connection)
        #expect(deployed.status == 0, "\(deployed.stderr)")
        #expect(deployed.stdout.contains("deployed cli.swift: cli.hello"))

        let invoked = try await runCommand(TestEnvironment.esb, ["invoke", "cli.hello", "--payload", "there"] + connection)
        #expect(invoked.stdout == "hello there\n")
        let payloadFile = server.directory + "/payload.txt"
        try "from file".write(toFile: payloadFile, atomically: true, encoding: .utf8)
        #expect(try await runCommand(TestEnvironment.esb, ["invoke", "cli.hello", "--payload-file", payloadFile] + connection).stdout == "hello from file\n")
        let unknown = try await runCommand(TestEnvironment.esb, ["invoke", "cli.nope"] + connection)
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("invoke.unknown_service"))

        let services = try await runCommand(TestEnvironment.esb, ["services"] + connection).stdout
        let row = services.split(separator: "\n").first { $0.hasPrefix("cli.hello ") }
        #expect(row?.split(separator: " ") == ["cli.hello", "cli.swift", "deployed"])
        let deployments = try await runCommand(TestEnvironment.esb, ["deployments"] + connection)
        #expect(deployments.stdout.contains("cli.swift  service  deployed  1"), "\(deployments.stdout)")
        #expect(deployments.stdout.contains("SERVERS") && deployments.stdout.contains("test-server=deployed"), "\(deployments.stdout)")

        let broken = server.directory + "/broken.swift"
        try "import ESBService\nstruct B: Service { static let name = 1 }\n".write(toFile: broken, atomically: true, encoding: .utf8)
        let failed = try await runCommand(TestEnvironment.esb, ["deploy", broken] + connection)
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("broken.swift:2:"), "diagnostics with file:line: \(failed.stderr)")
    }
}
