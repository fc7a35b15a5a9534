import ESBConfig
import AsyncHTTPClient
import ESBCore
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A real esbd process on a temporary directory, random port and its own notify socket.
final class TestServer: @unchecked Sendable {
    let directory: String
    let port: Int
    let notify: NotifySocket
    let configPath: String
    let stderrPath: String
    var password = "test-pass-\(UUID().uuidString.prefix(6))"
    private(set) var process: Process?

    /// Writes server.conf (with `extra` appended to [main] and `sections` after), a key and a password.
    init(name: String = "test-server", main extra: String = "", sections: String = "") throws {
        directory = TestEnvironment.temporaryDirectory("esbd")
        port = TestEnvironment.freePort()
        notify = NotifySocket(directory: directory)
        configPath = directory + "/server.conf"
        stderrPath = directory + "/esbd.stderr"
        try SecretBox.createKeyFile(at: directory + "/secret.key")
        try writeSecretFile(password + "\n", to: directory + "/admin.password")
        try writeConfig(name: name, main: extra, sections: sections)
    }

    func writeConfig(name: String = "test-server", main extra: String = "", sections: String = "") throws {
        let text = """
            [main]
            name = \(name)
            bind = 127.0.0.1:\(port)
            graceful_shutdown_seconds = 5
            \(extra)
            [crypto]
            secret_key_path = ./secret.key
            [admin]
            password_file = ./admin.password
            [odb]
            path = ./esb.db
            \(sections)
            """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts esbd and waits for `READY=1`.
    func start(waitForReady: Bool = true, environment extra: [String: String] = [:]) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.esbd)
        process.arguments = ["--config", configPath]
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        environment.merge(extra) { $1 }
        process.environment = environment
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle.nullDevice
        // Forgotten once it exits: its pid may be another process's later.
        process.terminationHandler = { process in TestServer.running.withLock { _ = $0.remove(process.processIdentifier) } }
        try process.run()
        TestServer.started(process)
        self.process = process
        if waitForReady {
            guard await notify.wait(for: "READY=1") != nil else {
                throw TestFailure("esbd sent no READY=1; stderr:\n\(log)")
            }
        }
    }

    var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) {
        if let process { kill(process.processIdentifier, number) }
    }

    /// Waits for the process to exit and returns its status.
    func waitForExit(timeout: Double = 30) async -> Int32? {
        guard let process else { return nil }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    func stop() async {
        signal(SIGTERM)
        if await waitForExit(timeout: 15) == nil { signal(SIGKILL) }
    }

    struct Reply {
        var status: Int
        var body: Data
        var headers: [String: String]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: body) as? [String: Any] }
    }

    /// One HTTP request; `credentials` nil sends none.
    func request(_ method: String, _ path: String, body: Data? = nil,
                 credentials: (String, String)? = nil, headers extra: [String: String] = [:]) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = HTTPMethod(rawValue: method)
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let (user, password) = credentials {
            request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }
        // A bound, not an expectation: a deploy through the API waits for a compile on a loaded machine.
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(180))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), body: Data(bytes.readableBytesView), headers: headers)
    }

    var admin: (String, String) { ("admin", password) }

    /// The dashboard's cookie jar and address.
    private var dashboardSession: (jar: String, base: String) { (directory + "/cookies.txt", "http://127.0.0.1:\(port)") }

    /// A dashboard page as a signed-in browser gets it (curl with a cookie jar).
    func dashboardPage(_ path: String) async throws -> String {
        let (jar, base) = dashboardSession
        let form = try await runCommand("/usr/bin/env", ["curl", "-s", "-c", jar, "-b", jar, base + "/esb/dashboard/login"]).stdout
        guard let token = Self.csrfToken(in: form) else {
            // Signed in already (an earlier page): the sign-in page sends the browser on.
            if FileManager.default.fileExists(atPath: jar) && form.isEmpty {
                return try await runCommand("/usr/bin/env", ["curl", "-s", "-b", jar, base + path]).stdout
            }
            throw TestFailure("no csrf token on the sign-in page: \(form)")
        }
        _ = try await runCommand("/usr/bin/env", ["curl", "-s", "-c", jar, "-b", jar, "--data-urlencode", "csrf=\(token)",
                                                  "--data-urlencode", "username=admin", "--data-urlencode", "password=\(password)",
                                                  base + "/esb/dashboard/login"])
        return try await runCommand("/usr/bin/env", ["curl", "-s", "-b", jar, base + path]).stdout
    }

    /// Submits a dashboard form as a signed-in browser would, with the csrf token of the page
    /// at `page`; returns the status and where a redirect goes.
    func dashboardPost(_ path: String, from page: String, fields: [String: String] = [:]) async throws -> (status: Int, location: String) {
        guard let token = Self.csrfToken(in: try await dashboardPage(page)) else { throw TestFailure("no csrf token on \(page)") }
        let (jar, base) = dashboardSession
        var arguments = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-b", jar, "-c", jar,
                         "-H", "Origin: \(base)", "--data-urlencode", "csrf=\(token)"]
        for (name, value) in fields { arguments += ["--data-urlencode", "\(name)=\(value)"] }
        let out = try await runCommand("/usr/bin/env", arguments + [base + path]).stdout.split(separator: " ", maxSplits: 1)
        return (Int(out.first ?? "") ?? 0, out.count > 1 ? String(out[1]) : "")
    }

    /// The csrf token of a dashboard form in `html`.
    static func csrfToken(in html: String) -> Substring? {
        html.range(of: #"name="csrf" value="([^"]+)""#, options: .regularExpression).map { html[$0].split(separator: "\"")[3] }
    }

    /// Runs the `esb` command line against this server (ESB_URL, ESB_USER, ESB_PASSWORD).
    func esb(_ arguments: [String]) async throws -> CommandResult {
        let environment = ProcessInfo.processInfo.environment.merging([
            "ESB_URL": "http://127.0.0.1:\(port)", "ESB_USER": "admin", "ESB_PASSWORD": password]) { $1 }
        return try await runCommand(TestEnvironment.esb, arguments, environment: environment)
    }

    var pickupDirectory: String { directory + "/pickup" }

    /// Drops a file into the pickup directory the way editors and deploy tools do: written
    /// elsewhere, then renamed into place.
    func drop(_ name: String, _ contents: String) throws {
        try FileManager.default.createDirectory(atPath: pickupDirectory, withIntermediateDirectories: true)
        let temporary = directory + "/.\(name).\(UUID().uuidString.prefix(6))"
        try contents.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, pickupDirectory + "/" + name) == 0 else { throw TestFailure("rename failed") }
    }

    /// Writes `pickup/lib/LIBRARY/FILE` whole (a hidden temporary renamed into place).
    func dropLibraryFile(_ library: String, _ file: String, _ contents: String) throws {
        let folder = pickupDirectory + "/lib/" + library
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let temporary = folder + "/.\(file).\(UUID().uuidString.prefix(6))"
        try contents.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, folder + "/" + file) == 0 else { throw TestFailure("cannot place \(file) in \(folder)") }
    }

    /// The deployment unit `name` from the admin API.
    func deployment(_ name: String) async throws -> [String: Any]? {
        let reply = try await request("GET", "/esb/api/deployments", credentials: admin)
        let units = (try JSONSerialization.jsonObject(with: reply.body) as? [[String: Any]]) ?? []
        return units.first { $0["name"] as? String == name }
    }

    /// Waits until `unit` reports `status` at a version above `after` (or any version).
    @discardableResult
    func waitForDeployment(_ unit: String, status: String = "deployed", afterVersion: Int = 0,
                           timeout: Double = 180) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = try await deployment(unit), found["status"] as? String == status,
               status == "failed" || (found["version"] as? Int ?? 0) > afterVersion {
                return found
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("\(unit) did not reach '\(status)'; deployments: \(String(describing: try await deployment(unit)))\nlog:\n\(log)")
    }

    /// `POST /esb/api/invoke/{service}` with a text payload.
    func invoke(_ service: String, _ payload: String = "") async throws -> Reply {
        try await request("POST", "/esb/api/invoke/\(service)", body: Data(payload.utf8), credentials: admin)
    }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Every esbd a test started: those still running when the test process exits (a
    /// test's deferred stop that never ran) are killed then, not left serving.
    private static let running = Mutex<Set<Int32>>([])

    private static func started(_ process: Process) {
        let first = running.withLock { running -> Bool in
            // Under the lock the termination handler takes too: one that already ran leaves it out.
            if process.isRunning { running.insert(process.processIdentifier) }
            return !exitHookInstalled.exchange(true, ordering: .relaxed)
        }
        if first { atexit { TestServer.killRunning() } }
    }

    private static let exitHookInstalled = Atomic(false)

    private static func killRunning() {
        for pid in running.withLock({ $0 }) { kill(pid, SIGKILL) }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
