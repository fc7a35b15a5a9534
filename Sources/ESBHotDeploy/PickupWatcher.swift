import ESBConcurrency
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Watches the pickup directory and deploys each `.swift` or `.so` file once it is fully
/// written (inotify `IN_CLOSE_WRITE` or `IN_MOVED_TO`; polling when inotify is unavailable),
/// and each library `lib/NAME/` (its `.swift` files) once its files have been quiet for
/// 300 ms. Editor temporaries (dot files, `~`, `.swp`, `.tmp`) are ignored.
public struct PickupWatcher: Service, CustomStringConvertible {
    public var description: String { "PickupWatcher" }
    let directory: String
    let deployer: Deployer
    let logger: Logger
    let deleteAfterPickup: @Sendable () -> Bool
    /// `[hot_deploy] max_source_bytes` in force: larger files are refused.
    let maxSourceBytes: @Sendable () -> Int

    public init(directory: String, deployer: Deployer, logger: Logger, deleteAfterPickup: @escaping @Sendable () -> Bool,
                maxSourceBytes: @escaping @Sendable () -> Int = { 1 << 20 }) {
        self.maxSourceBytes = maxSourceBytes
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

    /// The library directory, `pickup/lib`.
    var libraryDirectory: String { (directory as NSString).appendingPathComponent("lib") }

    /// Deploys what is already in the directory (at start): libraries first, each after the
    /// ones it imports, then the files in name order.
    public func deployExisting() async {
        let libraries = Self.subdirectories(of: libraryDirectory)
        let sources = Dictionary(uniqueKeysWithValues: libraries.map {
            ($0, LibrarySource.read(name: $0, directory: (libraryDirectory as NSString).appendingPathComponent($0)))
        })
        var deployed: Set<String> = []
        func deploy(_ name: String, _ path: Set<String>) async {
            guard let source = sources[name], !deployed.contains(name), !path.contains(name) else { return }
            for dependency in source.imports(among: Set(libraries)) { await deploy(dependency, path.union([name])) }
            deployed.insert(name)
            _ = await deployer.deployLibrary(name: name, directory: (libraryDirectory as NSString).appendingPathComponent(name))
        }
        for name in libraries { await deploy(name, []) }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where Self.isDeployable(name) { await pickUp(name, atStart: true) }
    }

    /// When the file was last written or put in place: the later of its modification and
    /// status-change times (a copy that keeps the modification time still changes the latter).
    static func changed(_ info: stat) -> Date {
        func date(_ time: timespec) -> Date {
            Date(timeIntervalSince1970: TimeInterval(time.tv_sec) + TimeInterval(time.tv_nsec) / 1e9)
        }
        return max(date(info.st_mtim), date(info.st_ctim))
    }

    static func subdirectories(of path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { name in
            var isDirectory: ObjCBool = false
            return !name.hasPrefix(".") && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(name),
                                                                          isDirectory: &isDirectory) && isDirectory.boolValue
        }.sorted()
    }

    public func run() async throws {
        let events = AsyncStream<Event> { continuation in
            let stop = Mutex(false)
            let thread = Thread {
                Self.watch(directory: directory, logger: logger, stop: stop) { continuation.yield($0) }
                continuation.finish()
            }
            thread.name = "esb-pickup"
            thread.start()
            continuation.onTermination = { _ in stop.withLock { $0 = true } }
        }
        // Files deploy concurrently, one more than the cores: a compile is three processes in
        // turn (frontend, autolink, linker), and the extra one fills the gaps between them.
        // The deployer keeps each file's versions in order.
        let limit = max(2, ProcessInfo.processInfo.activeProcessorCount + 1)
        // A library's files arrive one by one: deploy it once they have been quiet for a moment.
        let generations = Generations()
        let slots = Slots(limit)
        await withDiscardingTaskGroup { group in
            for await event in events.cancelOnGracefulShutdown() {
                switch event {
                case .armed:
                    // Files dropped between the start's sweep and the watch are not lost:
                    // look once more (unchanged content is a no-op, quarantine still holds).
                    group.addTask { await deployExisting() }
                case .library(let library):
                    let generation = generations.next(library)
                    group.addTask {
                        try? await Task.sleep(for: .milliseconds(300))
                        guard generations.current(library) == generation else { return }
                        _ = await deployer.deployLibrary(name: library, directory: (libraryDirectory as NSString).appendingPathComponent(library))
                    }
                case .file(let name):
                    guard Self.isDeployable(name) else { continue }
                    await slots.take()
                    group.addTask {
                        await pickUp(name)
                        slots.give()
                    }
                }
            }
        }
        // The watch ends before a shutdown only when it failed (and logged why). Stay a member
        // until the group stops us: one that returns while the group is stopping the members
        // after it counts as failed, and esbd would exit 1.
        try? await gracefulShutdown()
    }

    func pickUp(_ name: String, atStart: Bool = false) async {
        let path = (directory as NSString).appendingPathComponent(name)
        // One descriptor for the checks and the read: nothing can be swapped in between, a link is
        // not followed (it could make the server read, and report, any file it can reach), and a
        // FIFO cannot stall the watcher.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 && errno == ELOOP {
            logger.warning("pickup file is a symbolic link; ignored (copy the file in instead)", metadata: ["esb.file": "\(path)"])
            return
        }
        guard fd >= 0 else {
            logger.warning("picked-up file vanished before it could be read", metadata: ["esb.file": "\(path)"])
            return
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return }
        let limit = maxSourceBytes()
        if Int(info.st_size) > limit {
            logger.error("pickup file refused: \(info.st_size) bytes, over [hot_deploy] max_source_bytes (\(limit))",
                         metadata: ["esb.file": "\(path)"])
            return
        }
        let data: Data
        do {
            // nil at the end of the file: an empty file.
            data = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            logger.warning("picked-up file could not be read", metadata: ["esb.file": "\(path)", "esb.error": "\(error)"])
            return
        }
        guard data.count <= limit else {
            logger.error("pickup file refused: it grew over [hot_deploy] max_source_bytes (\(limit))", metadata: ["esb.file": "\(path)"])
            return
        }
        let outcome = atStart
            ? await deployer.deployAtStart(fileName: name, source: data, displayPath: path, modified: Self.changed(info))
            : await deployer.deploy(fileName: name, source: data, displayPath: path)
        if outcome?.status == .deployed && deleteAfterPickup() {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// What the watcher thread reports.
    enum Event: Sendable, Hashable {
        /// The watch is in place.
        case armed
        /// A file of the pickup directory was written or moved in.
        case file(String)
        /// A file of the library in `lib/NAME` changed, or the library appeared.
        case library(String)
    }

    /// What an inotify watch descriptor watches.
    private enum Watched {
        case pickup, libraries, library(String)
    }

    /// Blocks its own thread: inotify with a 250 ms poll for `stop`, or a 1 s directory scan.
    private static func watch(directory: String, logger: Logger, stop: borrowing Mutex<Bool>,
                              emit: (Event) -> Void) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
        let watch = fd >= 0 ? inotify_add_watch(fd, directory, mask) : -1
        guard fd >= 0, watch >= 0 else {
            logger.warning("inotify unavailable; polling the pickup directory every second",
                           metadata: ["esb.pickup_dir": "\(directory)", "esb.error": "\(String(cString: strerror(errno)))"])
            if fd >= 0 { close(fd) }
            poll(directory: directory, stop: stop, emit: emit)
            return
        }
        defer { close(fd) }
        var watched: [Int32: Watched] = [watch: .pickup]
        let libraryDirectory = (directory as NSString).appendingPathComponent("lib")
        func watchLibraries() {
            let lib = inotify_add_watch(fd, libraryDirectory, mask)
            guard lib >= 0 else { return }
            watched[lib] = .libraries
            for name in subdirectories(of: libraryDirectory) { watchLibrary(name) }
        }
        func watchLibrary(_ name: String) {
            let library = inotify_add_watch(fd, (libraryDirectory as NSString).appendingPathComponent(name), mask)
            if library >= 0 { watched[library] = .library(name) }
        }
        watchLibraries()
        emit(.armed)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !stop.withLock({ $0 }) {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard Glibc.poll(&descriptor, 1, 250) > 0 else { continue }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { continue }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let (length, name, descriptor, eventMask) = buffer.withUnsafeBytes { raw -> (Int, String, Int32, UInt32) in
                    let event = raw.load(fromByteOffset: offset, as: inotify_event.self)
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let nameBytes = raw[nameStart..<(nameStart + Int(event.len))].prefix { $0 != 0 }
                    return (Int(event.len), String(decoding: nameBytes, as: UTF8.self), event.wd, event.mask)
                }
                offset += MemoryLayout<inotify_event>.size + length
                let isDirectory = eventMask & UInt32(IN_ISDIR) != 0
                guard !name.isEmpty, !name.hasPrefix("."), let place = watched[descriptor] else { continue }
                switch place {
                case .pickup:
                    if name == "lib" && isDirectory {
                        watchLibraries()
                        for library in subdirectories(of: libraryDirectory) { emit(.library(library)) }
                    } else if eventMask & UInt32(IN_CREATE) == 0 {
                        emit(.file(name))  // a file is taken once written (IN_CLOSE_WRITE) or moved in, not at creation
                    }
                case .libraries:
                    if isDirectory {
                        watchLibrary(name)
                        emit(.library(name))
                    }
                case .library(let library):
                    if name.hasSuffix(".swift") && eventMask & UInt32(IN_CREATE) == 0 { emit(.library(library)) }
                }
            }
        }
    }

    private static func poll(directory: String, stop: borrowing Mutex<Bool>, emit: (Event) -> Void) {
        func modificationTimes() -> [Event: Date] {
            var times: [Event: Date] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = (directory as NSString).appendingPathComponent(name)
                times[.file(name)] = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            }
            // A library counts as changed when any of its files did: its newest file's time.
            let libraryDirectory = (directory as NSString).appendingPathComponent("lib")
            for library in subdirectories(of: libraryDirectory) {
                let folder = (libraryDirectory as NSString).appendingPathComponent(library)
                let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                times[.library(library)] = files.compactMap {
                    (try? FileManager.default.attributesOfItem(atPath: (folder as NSString).appendingPathComponent($0)))?[.modificationDate] as? Date
                }.max()
            }
            return times
        }
        // What is there now was deployed at start; afterwards a file is taken once it changed
        // and then stayed unchanged for a second (fully written).
        var seen = modificationTimes()
        emit(.armed)
        while !stop.withLock({ $0 }) {
            Thread.sleep(forTimeInterval: 1)
            for (event, modified) in modificationTimes() where seen[event] != modified && modified.timeIntervalSinceNow < -1 {
                seen[event] = modified
                emit(event)
            }
        }
    }
}

/// A counter per library: a deploy waits out a quiet moment and goes ahead only if no newer
/// change of the same library came meanwhile.
private final class Generations: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func next(_ name: String) -> Int {
        counts.withLock { counts in
            counts[name, default: 0] += 1
            return counts[name]!
        }
    }

    func current(_ name: String) -> Int? { counts.withLock { $0[name] } }
}

/// At most `limit` pickups at a time; one task takes slots, any gives them back.
private final class Slots: Sendable {
    private let limit: Int
    private let taken = Atomic<Int>(0)
    private let freed = Doorbell()

    init(_ limit: Int) { self.limit = limit }

    func take() async {
        while taken.load(ordering: .acquiring) >= limit && !Task.isCancelled { await freed.wait() }
        taken.add(1, ordering: .relaxed)
    }

    func give() {
        taken.subtract(1, ordering: .releasing)
        freed.ring()
    }
}
