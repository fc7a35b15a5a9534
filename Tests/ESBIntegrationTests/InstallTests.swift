import ESBConfig
import ESBCore
import ESBHotDeploy
import Foundation
import Testing

/// scripts/install.sh into a temporary root: the layout, the unit, the generated server.conf,
/// the installed esbd running, and a service compiled against the installed SDK.
@Suite struct InstallTests {
    @Test func installedLayoutRunsAndCompilesServices() async throws {
        let root = TestEnvironment.temporaryDirectory("install")
        let install = try await runCommand(
            "/bin/bash", [TestEnvironment.packageRoot + "/scripts/install.sh", "--root", root, "--prefix", "/usr",
                          "--build-dir", TestEnvironment.buildDirectory, "--no-user"])
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")

        let lib = root + "/usr/lib/esb"
        for file in ["esbd", "esb", "libESBService.so", "Modules/ESBService.swiftmodule"] {
            #expect(FileManager.default.fileExists(atPath: "\(lib)/\(file)"), "\(file)")
        }
        #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/esbd"))

        let unit = try String(contentsOfFile: root + "/etc/systemd/system/esbd.service", encoding: .utf8)
        #expect(unit.contains("Type=notify"))
        #expect(unit.contains("ExecStart=\(root)/usr/bin/esbd --config \(root)/etc/esb/server.conf"))
        #expect(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        #expect(unit.contains("RestartPreventExitStatus=78"))
        #expect(unit.contains("User=esb"))
        #expect(!unit.contains("@PREFIX@"))

        let configPath = root + "/etc/esb/server.conf"
        let mode = try FileManager.default.attributesOfItem(atPath: configPath)[.posixPermissions] as? Int
        #expect(mode == 0o640, "server.conf is not for every user to read")
        let config = try ServerConfig.load(path: configPath).config
        #expect(config.main.workDir == root + "/var/lib/esb/work")
        #expect(config.odb.path == root + "/var/lib/esb/esb.db")
        #expect(config.crypto.secretKeyPath == root + "/etc/esb/secret.key")
        #expect(config.hotDeploy.swiftc.hasPrefix("/"), "absolute swiftc for systemd")
        #expect(config.startupServices.contains { $0.payload == .file(root + "/etc/esb/payloads/hello.json") })

        // The installed esbd runs on the installed configuration.
        let port = TestEnvironment.freePort()
        var text = try String(contentsOfFile: configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "bind = 127.0.0.1:17010", with: "bind = 127.0.0.1:\(port)")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let notify = NotifySocket(directory: root)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: root + "/usr/bin/esbd")
        process.arguments = ["--config", configPath]
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        process.environment = environment
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { process.terminate() }
        #expect(await notify.wait(for: "READY=1") != nil)
        let ping = try await runCommand(root + "/usr/bin/esb", ["ping", "--url", "http://127.0.0.1:\(port)"])
        #expect(ping.status == 0, "\(ping.stderr)")

        // A file dropped into the installed pickup directory compiles against the installed SDK.
        let dropped = root + "/dropped.swift"
        try """
            import ESBService
            struct Installed: Service {
                static let name = "installed.drop"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .text("live") }
            }
            """.write(toFile: dropped, atomically: true, encoding: .utf8)
        #expect(rename(dropped, root + "/var/lib/esb/pickup/dropped.swift") == 0)
        let password = try String(contentsOfFile: root + "/etc/esb/admin.password", encoding: .utf8).trimmingCharacters(in: .newlines)
        var invoked = CommandResult(status: 1, stdout: "", stderr: "")
        for _ in 0..<300 where invoked.stdout != "live\n" {
            invoked = try await runCommand(root + "/usr/bin/esb", ["invoke", "installed.drop", "--url", "http://127.0.0.1:\(port)",
                                                                   "--password", password])
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(invoked.stdout == "live\n", "\(invoked.stderr)")

        // A service compiles against the installed SDK alone.
        let fixture = try await PluginFixture.compile(
            PluginFixture.serviceSource(typeName: "Svc", serviceName: "installed.svc", body: #".text("ok")"#),
            moduleName: "Svc_installed", sdk: SDKLocation(libraryDirectory: lib, moduleDirectory: lib + "/Modules"),
            swiftc: config.hotDeploy.swiftc, in: root)
        #expect(fixture.output.succeeded, "\(fixture.output.diagnostics)")
        let plugin = try PluginLoader.load(path: fixture.library)
        #expect(plugin.services.map { $0.name } == ["installed.svc"])
    }
}
