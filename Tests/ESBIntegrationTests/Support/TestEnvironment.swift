import Foundation
import Synchronization

/// Where the built binaries and the package are, and helpers every end-to-end test uses.
enum TestEnvironment {
    /// `.build/<triple>/debug`: the test executable lives there beside esbd and esb.
    static let buildDirectory: String = {
        if let override = ProcessInfo.processInfo.environment["ESB_BUILD_DIR"], !override.isEmpty { return override }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }()

    static let packageRoot: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static var esbd: String { buildDirectory + "/esbd" }
    static var esb: String { buildDirectory + "/esb" }

    /// A fresh directory under the system temporary directory.
    static func temporaryDirectory(_ prefix: String) -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Ports handed out in this process: never twice.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A TCP port that was free a moment ago on 127.0.0.1, below the kernel's ephemeral range
    /// (32768–60999): an ephemeral port picked with bind(0) can be taken by any outgoing
    /// connection before the server binds it, which many parallel tests make likely.
    static func freePort() -> Int {
        while true {
            let port = Int.random(in: 20_000..<32_000)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    static func isListening(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// The outcome of running a command to completion.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion off the cooperative pool.
func runCommand(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                directory: String? = nil, input: Data? = nil) async throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let inputPipe = input.map { _ in Pipe() }
    if let inputPipe { process.standardInput = inputPipe } else { process.standardInput = FileHandle.nullDevice }
    try process.run()
    if let input, let inputPipe {
        inputPipe.fileHandleForWriting.write(input)
        try inputPipe.fileHandleForWriting.close()
    }
    // Threads of their own, not GCD's bounded pool: many tests run commands at once.
    return await withCheckedContinuation { continuation in
        let errData = DataBox()
        let errRead = DispatchSemaphore(value: 0)
        // Both pipes are drained at once so that neither can fill up and stall the child.
        Thread {
            errData.data = err.fileHandleForReading.readDataToEndOfFile()
            errRead.signal()
        }.start()
        Thread {
            let outData = out.fileHandleForReading.readDataToEndOfFile()
            errRead.wait()
            process.waitUntilExit()
            continuation.resume(returning: CommandResult(
                status: process.terminationStatus,
                stdout: String(decoding: outData, as: UTF8.self),
                stderr: String(decoding: errData.data, as: UTF8.self)))
        }.start()
    }
}

/// Written by one reader thread, read after the semaphore: no concurrent access.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// Writes a secret file (a password) as an operator would: readable by its owner only, or
/// esbd refuses to start.
func writeSecretFile(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    guard chmod(path, 0o600) == 0 else { throw TestFailure("cannot chmod \(path)") }
}
