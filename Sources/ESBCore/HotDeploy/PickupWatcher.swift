import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Watches the pickup directory and deploys each `.swift` or `.so` file once it is fully
/// written (inotify `IN_CLOSE_WRITE` or `IN_MOVED_TO`; polling when inotify is unavailable).
/// Editor temporaries (dot files, `~`, `.swp`, `.tmp`) are ignored.
public struct PickupWatcher: Service, CustomStringConvertible {
    public var description: String { "PickupWatcher" }
    let directory: String
    let deployer: Deployer
    let logger: Logger
    let deleteAfterPickup: @Sendable () -> Bool

    public init(directory: String, deployer: Deployer, logger: Logger, deleteAfterPickup: @escaping @Sendable () -> Bool) {
        self.directory = directory
        self.deployer = deployer
        self.logger = logger
        self.deleteAfterPickup = deleteAfterPickup
    }

    /// Whether a file name is something to deploy.
    public static func isDeployable(_ name: String) -> Bool {
        guard !name.hasPrefix("."), !name.hasSuffix("~"), !name.hasPrefix("#") else { return false }
        let ext = (name as NSString).pathExtension
        return ext == "swift" || ext == "so"
    }

    /// Deploys every deployable file already in the directory (at start), in name order.
    public func deployExisting() async {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where Self.isDeployable(name) { await pickUp(name, atStart: true) }
    }

    public func run() async throws {
        let events = AsyncStream<String> { continuation in
            let stop = Mutex(false)
            let thread = Thread {
                Self.watch(directory: directory, logger: logger, stop: stop) { continuation.yield($0) }
                continuation.finish()
            }
            thread.name = "esb-pickup"
            thread.start()
            continuation.onTermination = { _ in stop.withLock { $0 = true } }
        }
        // Files deploy concurrently (compiles use every core); the deployer keeps each
        // file's versions in order.
        let limit = max(2, ProcessInfo.processInfo.activeProcessorCount)
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await name in events.cancelOnGracefulShutdown() where Self.isDeployable(name) {
                if running >= limit {
                    await group.next()
                    running -= 1
                }
                group.addTask { await pickUp(name) }
                running += 1
            }
        }
    }

    func pickUp(_ name: String, atStart: Bool = false) async {
        let path = (directory as NSString).appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            logger.warning("picked-up file vanished before it could be read", metadata: ["esb.file": "\(path)"])
            return
        }
        let outcome = atStart
            ? await deployer.deployAtStart(fileName: name, source: data, displayPath: path)
            : await deployer.deploy(fileName: name, source: data, displayPath: path)
        if outcome?.status == "deployed" && deleteAfterPickup() {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Blocks its own thread: inotify with a 250 ms poll for `stop`, or a 1 s directory scan.
    private static func watch(directory: String, logger: Logger, stop: borrowing Mutex<Bool>,
                              emit: (String) -> Void) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        let watch = fd >= 0 ? inotify_add_watch(fd, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO)) : -1
        guard fd >= 0, watch >= 0 else {
            logger.warning("inotify unavailable; polling the pickup directory every second",
                           metadata: ["esb.pickup_dir": "\(directory)", "esb.error": "\(String(cString: strerror(errno)))"])
            if fd >= 0 { close(fd) }
            poll(directory: directory, stop: stop, emit: emit)
            return
        }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !stop.withLock({ $0 }) {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&descriptor, 1, 250) > 0 else { continue }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { continue }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let (length, name) = buffer.withUnsafeBytes { raw -> (Int, String) in
                    let event = raw.load(fromByteOffset: offset, as: inotify_event.self)
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let nameBytes = raw[nameStart..<(nameStart + Int(event.len))].prefix { $0 != 0 }
                    return (Int(event.len), String(decoding: nameBytes, as: UTF8.self))
                }
                if !name.isEmpty { emit(name) }
                offset += MemoryLayout<inotify_event>.size + length
            }
        }
    }

    private static func poll(directory: String, stop: borrowing Mutex<Bool>, emit: (String) -> Void) {
        func modificationTimes() -> [String: Date] {
            var times: [String: Date] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = (directory as NSString).appendingPathComponent(name)
                times[name] = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            }
            return times
        }
        // What is there now was deployed at start; afterwards a file is taken once it changed
        // and then stayed unchanged for a second (fully written).
        var seen = modificationTimes()
        while !stop.withLock({ $0 }) {
            Thread.sleep(forTimeInterval: 1)
            for (name, modified) in modificationTimes() where seen[name] != modified && modified.timeIntervalSinceNow < -1 {
                seen[name] = modified
                emit(name)
            }
        }
    }
}
