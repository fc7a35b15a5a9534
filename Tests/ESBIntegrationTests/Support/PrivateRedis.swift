import Foundation
import Synchronization

/// A redis-server of the test's own (a free port, optionally a password or a unix socket),
/// so that a test may stop and restart it without disturbing the others.
final class PrivateRedis: Sendable {
    let port: Int
    let password: String?
    let socketPath: String?
    private let process = Mutex<Process?>(nil)

    init(password: String? = nil, unixSocket: Bool = false) async throws {
        port = TestEnvironment.freePort()
        self.password = password
        socketPath = unixSocket ? TestEnvironment.temporaryDirectory("redis") + "/redis.sock" : nil
        try await start()
    }

    /// Starts (again) on the same port and waits until it answers.
    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        var arguments = ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if let password { arguments += ["--requirepass", password] }
        if let socketPath { arguments += ["--unixsocket", socketPath, "--unixsocketperm", "700"] }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process.withLock { $0 = process }
        for _ in 0..<200 where !TestEnvironment.isListening(port: port) { try await Task.sleep(for: .milliseconds(20)) }
    }

    /// Stops it (SIGKILL: no goodbye to clients) and waits until the port is free.
    func kill() async throws {
        guard let process = self.process.withLock({ $0 }) else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        for _ in 0..<200 where TestEnvironment.isListening(port: port) { try await Task.sleep(for: .milliseconds(20)) }
    }

    deinit {
        if let process = process.withLock({ $0 }), process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }
}
