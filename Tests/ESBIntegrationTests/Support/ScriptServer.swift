import Foundation

/// A helper server from scripts/testkit or config/samples (Python), started on its own and
/// stopped by the test. The script prints one line (`ready`) once it listens.
final class ScriptServer: Sendable {
    let process: Process

    /// Starts `python3 SCRIPT ARGUMENTS…` (the path relative to the package root) and waits
    /// for its first line on a thread of its own (never the cooperative pool).
    init(_ script: String, _ arguments: [String]) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", TestEnvironment.packageRoot + "/" + script] + arguments
        let output = Pipe()
        process.standardOutput = output
        // Never the test's own stderr: a child holding it open keeps `swift test` waiting.
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        let started = await withCheckedContinuation { continuation in
            Thread {
                let line = output.fileHandleForReading.availableData
                continuation.resume(returning: !line.isEmpty)
            }.start()
        }
        guard started else { throw TestFailure("\(script) exited before it was ready") }
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Kills it and waits (briefly) until it has exited, so its port is closed on return.
    /// SIGKILL: children of the test process may inherit a mask that blocks SIGTERM.
    func stop() {
        signal(SIGKILL)
        for _ in 0..<500 where process.isRunning { usleep(10_000) }
    }
}
