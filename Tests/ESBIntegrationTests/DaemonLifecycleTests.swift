import ESBCore
import Foundation
import Testing

/// esbd as systemd runs it: READY, RELOADING/READY on SIGHUP, STOPPING and exit 0 on SIGTERM.
@Suite struct DaemonLifecycleTests {
    @Test func servesPingHealthMetricsAndGuardsTheAdminAPI() async throws {
        let server = try TestServer(name: "e2e-1")
        try await server.start()
        defer { Task { await server.stop() } }

        let ping = try await server.request("GET", "/esb/ping")
        #expect(ping.status == 200)
        #expect(ping.json?["status"] as? String == "ok")
        #expect(ping.json?["server"] as? String == "e2e-1")

        let health = try await server.request("GET", "/esb/health", credentials: server.admin)
        #expect(health.status == 200)
        #expect(health.json?["status"] as? String == "ok")
        let components = health.json?["components"] as? [String: Any]
        #expect((components?["odb"] as? [String: Any])?["status"] as? String == "ok")

        let anonymous = try await server.request("GET", "/esb/api/services")
        #expect(anonymous.status == 401)
        #expect(anonymous.headers["www-authenticate"]?.hasPrefix("Basic") == true)
        #expect((anonymous.json?["error"] as? [String: Any])?["code"] as? String == "unauthorized")
        let wrong = try await server.request("GET", "/esb/api/services", credentials: ("admin", "nope"))
        #expect(wrong.status == 401)
        let services = try await server.request("GET", "/esb/api/services", credentials: server.admin)
        #expect(services.status == 200)
        #expect(services.text.contains(#""name":"esb.helpers.echo""#), "built-ins are listed")

        let openAPIAnonymous = try await server.request("GET", "/esb/api/openapi.json")
        #expect(openAPIAnonymous.status == 401)
        let openAPI = try await server.request("GET", "/esb/api/openapi.json", credentials: server.admin)
        #expect(openAPI.status == 200)
        #expect(openAPI.json?["openapi"] as? String == "3.1.0")
        let paths = openAPI.json?["paths"] as? [String: Any] ?? [:]
        for path in ["/esb/api/services", "/esb/api/invoke/{service}", "/esb/api/deploy", "/esb/api/deployments",
                     "/esb/api/startup-services", "/esb/api/channels/http/{name}", "/esb/api/security/basic-auth/{name}/password",
                     "/esb/api/async/{cid}", "/esb/api/enmasse/export", "/esb/api/enmasse/import"] {
            #expect(paths[path] != nil, "\(path) is documented")
        }

        let missing = try await server.request("GET", "/esb/nothing-here")
        #expect(missing.status == 404)
        let error = missing.json?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "not_found")
        #expect((error?["message"] as? String)?.contains("/esb/nothing-here") == true)

        let wrongMethod = try await server.request("DELETE", "/esb/api/deployments", credentials: server.admin)
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "GET")
        #expect(try await server.request("DELETE", "/esb/api/deployments").status == 401, "no credentials: 401 first")
        #expect((wrongMethod.json?["error"] as? [String: Any])?["code"] as? String == "method_not_allowed")
        #expect(try await server.request("PATCH", "/esb/api/channels/http/x", credentials: server.admin).headers["allow"] == "DELETE, GET, PUT")

        let metrics = try await server.request("GET", "/metrics")
        #expect(metrics.status == 200)
        let rss = metrics.text.split(separator: "\n").first { $0.hasPrefix("process_resident_memory_bytes ") }
        #expect((rss?.split(separator: " ").last.flatMap { Double($0) } ?? 0) > 1_000_000, "RSS is read from /proc")
        #expect(metrics.text.contains("process_cpu_seconds_total "))
        #expect(metrics.text.contains(#"esb_server_info{server="e2e-1"} 1"#))
        #expect(metrics.text.contains(#"esb_http_requests_total{route="/esb/ping",method="GET",status="200"} 1"#), "requests by route")
        #expect(metrics.text.contains(#"esb_http_requests_total{route="NotFound",method="GET",status="404"} 1"#))
        #expect(metrics.text.contains(#"esb_http_request_duration_seconds_bucket{route="/esb/ping",method="GET",status="200""#), "durations")
    }

    @Test func notifiesSystemdThroughReloadAndShutdownAndExitsZero() async throws {
        let server = try TestServer()
        try await server.start()

        server.signal(SIGHUP)
        let reloading = await server.notify.wait(for: "RELOADING=1")
        #expect(reloading?.contains("MONOTONIC_USEC=") == true)
        #expect(await server.notify.wait(for: "READY=1") != nil)

        server.signal(SIGTERM)
        #expect(await server.notify.wait(for: "STOPPING=1") != nil)
        #expect(await server.waitForExit() == 0)
        #expect(!TestEnvironment.isListening(port: server.port))
    }

    @Test func sendsWatchdogKeepalivesWhenSystemdAsks() async throws {
        let server = try TestServer()
        try await server.start(environment: ["WATCHDOG_USEC": "200000"])
        defer { Task { await server.stop() } }
        #expect(await server.notify.wait(for: "WATCHDOG=1", timeout: 10) != nil)
        #expect(await server.notify.wait(for: "WATCHDOG=1", timeout: 10) != nil, "repeatedly")
    }

    @Test func watchdogMeantForAnotherProcessIsIgnored() {
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"]) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "200000"]) == .milliseconds(200))
        #expect(SystemdNotifier.watchdogInterval(environment: [:]) == nil)
    }

    @Test func sigintAlsoStopsGracefully() async throws {
        let server = try TestServer()
        try await server.start()
        server.signal(SIGINT)
        let status = await server.waitForExit()
        #expect(status == 0, "esbd stderr:\n\(server.log)")
    }

    @Test func reloadAppliesLiveSettingsNamesRestartOnesAndSurvivesABrokenFile() async throws {
        let server = try TestServer(name: "reload-1")
        try await server.start()
        defer { Task { await server.stop() } }

        // New admin password and log level apply live; a new bind or name needs a restart.
        try writeSecretFile("changed-password\n", to: server.directory + "/admin.password")
        try server.writeConfig(name: "reload-2", main: "log_level = debug")
        var text = try String(contentsOfFile: server.configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "bind = 127.0.0.1:\(server.port)", with: "bind = 127.0.0.1:1")
        try text.write(toFile: server.configPath, atomically: true, encoding: .utf8)
        server.signal(SIGHUP)
        #expect(await server.notify.wait(for: "READY=1") != nil)

        #expect(try await server.request("GET", "/esb/api/services", credentials: ("admin", "changed-password")).status == 200)
        #expect(try await server.request("GET", "/esb/api/services", credentials: server.admin).status == 401)
        #expect(try await server.request("GET", "/esb/ping").json?["server"] as? String == "reload-1")
        #expect(server.log.contains("[main] name changed from reload-1 to reload-2: needs a restart"))
        #expect(server.log.contains("debug esbd: reload applied"), "log level debug took effect")
        #expect(server.log.contains("[main] bind changed from 127.0.0.1:\(server.port) to 127.0.0.1:1: needs a restart"))

        // A broken file keeps the configuration in force and says why, with file:line.
        try "[main]\nlog_level = loud\n".write(toFile: server.configPath, atomically: true, encoding: .utf8)
        server.signal(SIGHUP)
        #expect(await server.notify.wait(for: "READY=1") != nil)
        #expect(server.log.contains("reload failed; keeping the configuration in force"))
        #expect(server.log.contains("server.conf:2: error: [main] log_level = 'loud' is not valid"))
        #expect(try await server.request("GET", "/esb/ping").json?["server"] as? String == "reload-1")
    }

    @Test func jsonLogFormatWritesOneObjectPerLine() async throws {
        let server = try TestServer(main: "log_format = json")
        try await server.start()
        await server.stop()
        let lines = server.log.split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["message"] != nil && object?["level"] != nil && object?["ts"] != nil)
        }
        #expect(lines.contains { $0.contains(#""esb.server":"test-server""#) })
    }
}

/// Configuration problems stop esbd with exit 78 (EX_CONFIG) before it binds anything.
@Suite struct DaemonConfigErrorTests {
    @Test func badValueExits78WithFileAndLineBeforeBinding() async throws {
        let server = try TestServer(main: "log_level = verbose")
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status == 78)
        #expect(result.stderr.contains("\(server.configPath):5: error: [main] log_level = 'verbose' is not valid; allowed: trace|debug|info|notice|warning|error|critical"))
        #expect(!TestEnvironment.isListening(port: server.port))
    }

    @Test func missingSecretKeyExits78AndSaysHowToCreateIt() async throws {
        let server = try TestServer()
        try FileManager.default.removeItem(atPath: server.directory + "/secret.key")
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status == 78)
        #expect(result.stderr.contains("esb create-key"))
    }

    @Test func missingAdminPasswordFileExits78() async throws {
        let server = try TestServer()
        try FileManager.default.removeItem(atPath: server.directory + "/admin.password")
        let result = try await runCommand(TestEnvironment.esbd, ["--config", server.configPath])
        #expect(result.status == 78)
        #expect(result.stderr.contains("password_file"))
    }

    @Test func missingConfigFileExits78() async throws {
        let result = try await runCommand(TestEnvironment.esbd, ["--config", "/nonexistent/server.conf"])
        #expect(result.status == 78)
        #expect(result.stderr.contains("/nonexistent/server.conf"))
    }

    @Test func portInUseFailsWithNonZeroExit() async throws {
        let first = try TestServer()
        try await first.start()
        defer { Task { await first.stop() } }
        let second = try TestServer()
        try second.writeConfig()
        var text = try String(contentsOfFile: second.configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "127.0.0.1:\(second.port)", with: "127.0.0.1:\(first.port)")
        try text.write(toFile: second.configPath, atomically: true, encoding: .utf8)
        let result = try await runCommand(TestEnvironment.esbd, ["--config", second.configPath])
        #expect(result.status != 0)
        #expect(result.stderr.lowercased().contains("address already in use"))
    }
}
