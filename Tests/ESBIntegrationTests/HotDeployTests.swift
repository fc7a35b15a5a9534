import ESBStore
import Foundation
import Testing

/// Hot deploy end to end: files dropped into the pickup directory of a real esbd, compiled
/// by the real swiftc, invoked over HTTP.
@Suite struct HotDeployTests {
    static func service(_ type: String, _ name: String, returning text: String) -> String {
        """
        struct \(type): Service {
            static let name = "\(name)"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                .text("\(text) \\(request.text)")
            }
        }
        """
    }

    /// A file left in the pickup directory is not deployed again at start when a later
    /// version of its unit was deployed since (through the API here; another server in a
    /// cluster): a restart must not roll that back. Dropped again, it deploys.
    @Test func aStalePickupFileDoesNotRollBackALaterDeploymentAtStart() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let v1 = "import ESBService\n" + Self.service("Stale", "stale.svc", returning: "v1")
        try server.drop("stale.swift", v1)
        _ = try await server.waitForDeployment("stale.swift")
        try await Task.sleep(for: .milliseconds(1100))  // the registry's clock past the file's
        let v2 = "import ESBService\n" + Self.service("Stale", "stale.svc", returning: "v2")
        let deployed = try await server.request("POST", "/esb/api/deploy?name=stale.swift", body: Data(v2.utf8),
                                                credentials: server.admin)
        #expect(deployed.status == 201, "\(deployed.text)")
        // A later version that fails changes nothing: v2 still serves, v1's file stays stale.
        let broken = try await server.request("POST", "/esb/api/deploy?name=stale.swift",
                                              body: Data("import ESBService\nstruct Broken: Service {".utf8), credentials: server.admin)
        #expect(broken.status == 422, "\(broken.text)")

        await server.stop()
        try await server.start()
        #expect(try await server.invoke("stale.svc", "x").text == "v2 x")
        #expect(server.log.contains("pickup file is older than the version of its unit deployed since"), "\(server.log.suffix(2000))")

        await server.stop()
        try server.drop("stale.swift", v1)
        try await server.start()
        #expect(try await server.invoke("stale.svc", "x").text == "v1 x")
    }

    @Test func droppedFileGoesLiveAndRedeployReplacesItsServices() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }

        try server.drop("orders.swift", "import ESBService\n" + Self.service("Create", "orders.create", returning: "v1")
                        + "\n" + Self.service("Cancel", "orders.cancel", returning: "cancelled"))
        let first = try await server.waitForDeployment("orders.swift")
        #expect(first["services"] as? [String] == ["orders.create", "orders.cancel"])
        let created = try await server.invoke("orders.create", "A1")
        #expect(created.status == 200)
        #expect(created.text == "v1 A1")
        #expect(created.headers["x-esb-cid"]?.count == 24)
        #expect(try await server.invoke("orders.cancel", "A1").text == "cancelled A1")

        // The new version changes behaviour and drops orders.cancel.
        try server.drop("orders.swift", "import ESBService\n" + Self.service("Create", "orders.create", returning: "v2"))
        let second = try await server.waitForDeployment("orders.swift", afterVersion: first["version"] as! Int)
        #expect(second["services"] as? [String] == ["orders.create"])
        #expect(try await server.invoke("orders.create", "A1").text == "v2 A1")
        let gone = try await server.invoke("orders.cancel", "A1")
        #expect(gone.status == 404)
        #expect((gone.json?["error"] as? [String: Any])?["code"] as? String == "invoke.unknown_service")
    }

    @Test func brokenFileIsReportedWithFileLineAndTheOldVersionKeepsServing() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("calc.swift", "import ESBService\n" + Self.service("Calc", "calc.run", returning: "good"))
        try await server.waitForDeployment("calc.swift")

        try server.drop("calc.swift", "import ESBService\nstruct Calc: Service {\n    static let name = \"calc.run\"\n    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {\n        let broken: Int = \"text\"\n    }\n}\n")
        let failed = try await server.waitForDeployment("calc.swift", status: "failed")
        let error = failed["error"] as? String ?? ""
        #expect(error.contains("\(server.pickupDirectory)/calc.swift:5:27: error"), "\(error)")
        #expect(failed["version"] as? Int == 1, "version 1 still serves")
        #expect(try await server.invoke("calc.run", "x").text == "good x")
    }

    @Test func aServiceNameDefinedInTwoFilesFailsNamingBoth() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("a.swift", "import ESBService\n" + Self.service("A", "shared.name", returning: "a"))
        try await server.waitForDeployment("a.swift")
        try server.drop("b.swift", "import ESBService\n" + Self.service("B", "shared.name", returning: "b"))
        let failed = try await server.waitForDeployment("b.swift", status: "failed")
        #expect((failed["error"] as? String)?.contains("service 'shared.name' is already deployed from 'a.swift'; 'b.swift' cannot define it too") == true)
        #expect(try await server.invoke("shared.name").text == "a ")
    }

    @Test func restartRestoresEveryServiceFromTheCacheWithoutCompiling() async throws {
        let server = try TestServer()
        try await server.start()
        try server.drop("keep.swift", "import ESBService\n" + Self.service("Keep", "keep.me", returning: "kept"))
        try await server.waitForDeployment("keep.swift")
        await server.stop()
        // Only the registry in the ODB can bring it back now.
        try FileManager.default.removeItem(atPath: server.pickupDirectory + "/keep.swift")

        try await server.start()
        defer { Task { await server.stop() } }
        #expect(try await server.invoke("keep.me", "x").text == "kept x")
        #expect(server.log.contains("deployed esb.cached=true esb.server=test-server esb.services=keep.me esb.unit=keep.swift"))
        #expect(try await server.deployment("keep.swift")?["version"] as? Int == 1, "no new version for unchanged content")
    }

    @Test func deleteAfterPickupRemovesTheFileAndBackupHistoryBoundsVersions() async throws {
        let server = try TestServer(sections: "[hot_deploy]\ndelete_after_pickup = true\nbackup_history = 1")
        try await server.start()
        defer { Task { await server.stop() } }
        var version = 0
        for text in ["one", "two", "three"] {
            try server.drop("hist.swift", "import ESBService\n" + Self.service("Hist", "hist.svc", returning: text))
            version = try await server.waitForDeployment("hist.swift", afterVersion: version)["version"] as! Int
            #expect(!FileManager.default.fileExists(atPath: server.pickupDirectory + "/hist.swift"), "deleted after pickup")
        }
        #expect(version == 3)
        #expect(try await server.invoke("hist.svc").text == "three ")
        let kept = try await runCommand("/usr/bin/sqlite3", [server.directory + "/esb.db",
                                                             "SELECT group_concat(version) FROM deployment_version WHERE unit = 'hist.swift'"])
        #expect(kept.stdout == "2,3\n", "the serving version plus backup_history = 1 older one")
    }

    /// A service that, given a marker path, creates it and stays in its call.
    static let crashySource = """
        import ESBService
        import Foundation
        struct Crashy: Service {
            static let name = "crashy.svc"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                if !request.text.isEmpty {
                    FileManager.default.createFile(atPath: request.text, contents: nil)
                    try await Task.sleep(for: .seconds(300))
                }
                return .text("alive")
            }
        }
        """

    @Test func aUnitWithACallInFlightInThreeCrashesInARowIsQuarantinedUntilDeployedAgain() async throws {
        let server = try TestServer()
        try await server.start()
        let source = Self.crashySource
        try server.drop("crashy.swift", source)
        try server.drop("bystander.swift", "import ESBService\n" + Self.service("Bystander", "bystander.svc", returning: "here"))
        try await server.waitForDeployment("crashy.swift")
        try await server.waitForDeployment("bystander.swift")
        for round in 1...3 {
            // A call of crashy.svc is in flight when the process dies; bystander.svc is idle.
            let marker = server.directory + "/in-flight-\(round)"
            let call = Task { try? await server.invoke("crashy.svc", marker) }
            let deadline = Date().addingTimeInterval(180)
            while !FileManager.default.fileExists(atPath: marker) && Date() < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(FileManager.default.fileExists(atPath: marker), "the call started")
            server.signal(SIGKILL)
            _ = await server.waitForExit()
            call.cancel()
            try await server.start()
        }
        defer { Task { await server.stop() } }
        let unit = try #require(try await server.deployment("crashy.swift"))
        #expect(unit["status"] as? String == "quarantined")
        #expect((unit["error"] as? String)?.contains("3 crashes in a row") == true)
        let bystander = try #require(try await server.deployment("bystander.swift"))
        #expect(bystander["status"] as? String == "deployed", "a unit with nothing in flight counts no crash")
        let inactive = try await server.invoke("crashy.svc")
        #expect(inactive.status == 503, "not loaded, though its file is still in the pickup directory")
        let error = inactive.json?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "invoke.inactive")
        #expect(error?["message"] as? String == "service 'crashy.svc' is inactive: its unit 'crashy.swift' is quarantined; deploy it again to load it")

        // Deploying it again lifts the quarantine.
        let redeployed = try await server.request("POST", "/esb/api/deploy?name=crashy.swift", body: Data(source.utf8), credentials: server.admin)
        #expect(redeployed.status == 201)
        #expect(try await server.invoke("crashy.svc").text == "alive")
    }

    @Test func aCleanStopResetsTheCrashCount() async throws {
        let server = try TestServer()
        try await server.start()
        try server.drop("steady.swift", "import ESBService\n" + Self.service("Steady", "steady.svc", returning: "ok"))
        try await server.waitForDeployment("steady.swift")
        for round in 1...4 {
            // Two crashes, one clean stop, two crashes: never three in a row.
            if round == 3 { await server.stop() } else { server.signal(SIGKILL); _ = await server.waitForExit() }
            try await server.start()
        }
        defer { Task { await server.stop() } }
        #expect(try await server.deployment("steady.swift")?["status"] as? String == "deployed")
        #expect(try await server.invoke("steady.svc").text == "ok ")
    }

    @Test func deployThroughTheAPIWaitsForTheResult() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let source = "import ESBService\n" + Self.service("Api", "api.deployed", returning: "via api")
        let created = try await server.request("POST", "/esb/api/deploy?name=api.swift", body: Data(source.utf8), credentials: server.admin)
        #expect(created.status == 201)
        #expect(created.json?["services"] as? [String] == ["api.deployed"])
        #expect(try await server.invoke("api.deployed").text == "via api ")

        let broken = try await server.request("POST", "/esb/api/deploy?name=bad.swift", body: Data("import ESBService\nlet x: Int = \"\"\n".utf8),
                                              credentials: server.admin)
        #expect(broken.status == 422)
        #expect(((broken.json?["error"] as? [String: Any])?["message"] as? String)?.contains("no file-scope, non-generic type lists 'Service'") == true)
        let badName = try await server.request("POST", "/esb/api/deploy?name=../x.swift", body: Data(), credentials: server.admin)
        #expect(badName.status == 422)
        #expect((badName.json?["error"] as? [String: Any])?["field"] as? String == "name")
    }

    @Test func prebuiltLibraryDropIsLoadedAsIs() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let fixture = try await PluginFixture.compile(
            PluginFixture.serviceSource(typeName: "Prebuilt", serviceName: "prebuilt.svc", body: #".text("from .so")"#),
            moduleName: "Prebuilt_\(UUID().uuidString.prefix(6))")
        #expect(fixture.output.succeeded)
        try FileManager.default.copyItem(atPath: fixture.library, toPath: server.directory + "/prebuilt.tmp")
        #expect(rename(server.directory + "/prebuilt.tmp", server.pickupDirectory + "/prebuilt.so") == 0)
        try await server.waitForDeployment("prebuilt.so")
        #expect(try await server.invoke("prebuilt.svc").text == "from .so")
    }

    @Test func aThrowingServiceGives500JSONWithTheCID() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("fails.swift", """
            import ESBService
            struct Fails: Service {
                static let name = "fails.always"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    throw ServiceError("orders.invalid", "order \\(request.text) has no lines")
                }
            }
            """)
        try await server.waitForDeployment("fails.swift")
        let reply = try await server.invoke("fails.always", "A7")
        #expect(reply.status == 500)
        let cid = try #require(reply.headers["x-esb-cid"])
        let error = reply.json?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "orders.invalid")
        #expect(error?["message"] as? String == "orders.invalid: order A7 has no lines (cid \(cid))")
        #expect(server.log.contains("service failed"))
    }

    @Test func invokeAsyncCallsTheCallbackWithTheOutcome() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let output = server.directory + "/callback.json"
        try server.drop("async.swift", """
            import ESBService
            import Foundation
            struct Start: Service {
                static let name = "async.start"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    let cid = try await context.invokeAsync("async.work", payload: request.text, callback: "async.done")
                    return .text(cid)
                }
            }
            struct Work: Service {
                static let name = "async.work"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    .text("worked on \\(request.text) via \\(request.channel)")
                }
            }
            struct Done: Service {
                static let name = "async.done"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    try request.payload.write(to: URL(fileURLWithPath: "\(output)"))
                    return .empty
                }
            }
            """)
        try await server.waitForDeployment("async.swift")
        let started = try await server.invoke("async.start", "job-1")
        #expect(started.status == 200)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: output) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let callback = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any]
        #expect(callback?["cid"] as? String == started.text)
        #expect(callback?["ok"] as? Bool == true)
        #expect(callback?["service"] as? String == "async.work")
        #expect(callback?["response"] as? String == "worked on job-1 via invoke-async")
        #expect(callback?["redelivered"] as? Bool == false)
    }
}

/// `[startup_services]`: file order, inline and file:// payloads, missing files and failures recorded, never fatal.
@Suite struct StartupServicesTests {
    @Test func runInFileOrderAndRecordEveryOutcome() async throws {
        let directory = TestEnvironment.temporaryDirectory("startup-payload")
        try #"{"from": "file"}"#.write(toFile: directory + "/payload.json", atomically: true, encoding: .utf8)
        let log = directory + "/order.log"
        let server = try TestServer()
        try server.writeConfig(sections: """
            [startup_services]
            startup.record = inline one
            startup.record2 = file://\(directory)/payload.json
            startup.missing-file = file://\(directory)/nope.json
            startup.fails = x
            no.such.service = y
            """)
        try server.drop("startup.swift", """
            import ESBService
            import Foundation
            func append(_ line: String) throws {
                let url = URL(fileURLWithPath: "\(log)")
                let old = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
                try (old + line + "\\n").write(to: url, atomically: true, encoding: .utf8)
            }
            struct Record: Service {
                static let name = "startup.record"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    try append("record \\(request.channel) \\(request.text)"); return .empty
                }
            }
            struct Record2: Service {
                static let name = "startup.record2"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    try append("record2 \\(request.text)"); return .empty
                }
            }
            struct Fails: Service {
                static let name = "startup.fails"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    throw ServiceError("startup.broken", "cannot warm up")
                }
            }
            """)
        try await server.start()
        defer { Task { await server.stop() } }

        var results: [[String: Any]] = []
        let deadline = Date().addingTimeInterval(30)
        repeat {
            let reply = try await server.request("GET", "/esb/api/startup-services", credentials: server.admin)
            results = (try JSONSerialization.jsonObject(with: reply.body) as? [[String: Any]]) ?? []
            if !results.contains(where: { $0["status"] as? String == "pending" }) { break }
            try await Task.sleep(for: .milliseconds(100))
        } while Date() < deadline
        #expect(results.map { $0["service"] as? String } == ["startup.record", "startup.record2", "startup.missing-file", "startup.fails", "no.such.service"])
        #expect(results.map { $0["status"] as? String } == ["ok", "ok", "skipped", "failed", "failed"])
        #expect((results[2]["error"] as? String)?.contains("\(directory)/nope.json") == true)
        #expect(results[3]["error"] as? String == "startup.broken: cannot warm up")
        #expect(results[0]["duration_ms"] is Int)
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "record startup-service inline one\nrecord2 {\"from\": \"file\"}\n")
        #expect(try await server.request("GET", "/esb/ping").status == 200, "never fatal")
    }
}
