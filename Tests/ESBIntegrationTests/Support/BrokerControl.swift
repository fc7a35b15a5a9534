import Foundation

/// Restarts and disrupts the shared RabbitMQ: only for suites that scripts/test runs alone.
enum BrokerControl {
    static func rabbitmqctl(_ arguments: String...) async throws {
        let result = try await runCommand("/usr/bin/env", ["rabbitmqctl", "-q"] + arguments)
        guard result.status == 0 else { throw AMQPPeer.PeerError(message: "rabbitmqctl \(arguments): \(result.stderr)") }
    }

    /// kill -9 of the broker's VM, then a fresh start (scripts/services waits until it answers).
    static func killAndRestart() async throws {
        let pid = try await runCommand("/usr/bin/env", ["rabbitmqctl", "-q", "eval", "os:getpid()."])
        let number = pid.stdout.trimmingCharacters(in: CharacterSet(charactersIn: "\"\n "))
        guard let process = Int32(number) else { throw AMQPPeer.PeerError(message: "no broker pid in '\(pid.stdout)'") }
        kill(process, SIGKILL)
        while kill(process, 0) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        // A stale pid file would make `rabbitmqctl wait` look at the dead VM.
        let host = try await runCommand("/bin/hostname", ["-s"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try? FileManager.default.removeItem(atPath: "/var/lib/rabbitmq/mnesia/rabbit@\(host).pid")
        // The detached broker inherits its starter's stdout: never a pipe we wait to close.
        // Foundation's Process was seen to leave this particular shell a zombie and wait forever,
        // so it is spawned and reaped by hand, on a thread of its own.
        let command = "'\(TestEnvironment.packageRoot)/scripts/services' start >/tmp/esb-broker-restart.log 2>&1"
        let status = await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            Thread {
                var pid: pid_t = 0
                let arguments: [UnsafeMutablePointer<CChar>?] = ([String](["/bin/sh", "-c", command])).map { strdup($0) } + [nil]
                defer { arguments.forEach { free($0) } }
                guard posix_spawn(&pid, "/bin/sh", nil, nil, arguments, environ) == 0 else { return continuation.resume(returning: Int32(-1)) }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                continuation.resume(returning: status)
            }.start()
        }
        guard status == 0 else { throw AMQPPeer.PeerError(message: "restart failed (\(status)); see /tmp/esb-broker-restart.log") }
    }
}
