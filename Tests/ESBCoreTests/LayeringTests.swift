import Foundation
import Testing

/// The package's layering, read from the sources: every import of one of our targets points
/// down, no target holds more than 40 % of the product's Swift lines, and `esb` links the
/// configuration alone.
@Suite struct LayeringTests {
    /// Each target and the targets of ours it may import, bottom up.
    static let allowed: [String: Set<String>] = [
        "CESBRabbitMQ": [], "CESBHiredis": [],
        "ESBConcurrency": [],
        "ESBAMQP": ["CESBRabbitMQ", "ESBConcurrency"],
        "ESBRedis": ["CESBHiredis", "ESBConcurrency"],
        "ESBConfig": [],
        "ESBStore": ["ESBConcurrency"],
        "ESBHotDeploy": ["ESBConcurrency", "ESBStore", "ESBService"],
        "ESBCore": ["ESBConcurrency", "ESBConfig", "ESBStore", "ESBHotDeploy", "ESBAMQP", "ESBRedis", "ESBService"],
        "ESBHTTP": ["ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore", "ESBService"],
        "esbd": ["ESBConfig", "ESBStore", "ESBHotDeploy", "ESBCore", "ESBHTTP"],
        // ESBStore and ESBCore for `esb odb copy`, which reads and writes ODBs itself.
        "esb": ["ESBConfig", "ESBStore", "ESBCore"],
    ]

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The Swift files under `directory`, with their text.
    static func sources(_ directory: URL) -> [(path: String, text: String)] {
        let files = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        return files.map { ($0.path, (try? String(contentsOf: $0, encoding: .utf8)) ?? "") }
    }

    @Test func everyImportOfOurTargetsPointsDown() throws {
        let targets = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources").path)
        #expect(Set(targets) == Set(Self.allowed.keys), "a target without layering rules")
        let ours = Set(Self.allowed.keys).union(["ESBService"])
        var violations: [String] = []
        for target in targets {
            for (path, text) in Self.sources(Self.root.appendingPathComponent("Sources/\(target)")) {
                for line in text.split(separator: "\n") where line.contains("import ") {
                    guard let module = line.split(separator: " ").last.map(String.init), ours.contains(module),
                          line.split(separator: " ").contains("import") else { continue }
                    if !(Self.allowed[target] ?? []).contains(module) {
                        violations.append("\(path): \(target) imports \(module)")
                    }
                }
            }
        }
        #expect(violations.isEmpty, "\(violations.joined(separator: "\n"))")
    }

    @Test func noTargetHoldsMoreThanFortyPercentOfTheProduct() throws {
        func lines(_ directory: URL) -> Int {
            Self.sources(directory).reduce(0) { $0 + $1.text.split(separator: "\n", omittingEmptySubsequences: false).count }
        }
        let sources = Self.root.appendingPathComponent("Sources")
        let targets = try FileManager.default.contentsOfDirectory(atPath: sources.path)
        let sizes = Dictionary(uniqueKeysWithValues: targets.map { ($0, lines(sources.appendingPathComponent($0))) })
        let total = sizes.values.reduce(0, +) + lines(Self.root.appendingPathComponent("SDK/Sources"))
        for (target, size) in sizes {
            #expect(size * 100 <= total * 40, "\(target): \(size) of \(total) lines")
        }
    }

    /// The store API is engine-neutral: each engine's client library appears in the store
    /// target and in each feature's implementation for that engine (GRDB in `SQLite*.swift`,
    /// PostgresNIO in `Postgres*.swift`), nowhere else.
    @Test(arguments: [("GRDB", "SQLite"), ("PostgresNIO", "Postgres")])
    func onlyAnEnginesFilesImportItsLibrary(library: String, prefix: String) throws {
        let sources = Self.root.appendingPathComponent("Sources")
        var violations: [String] = []
        for target in try FileManager.default.contentsOfDirectory(atPath: sources.path) where target != "ESBStore" {
            for (path, text) in Self.sources(sources.appendingPathComponent(target))
            where text.range(of: #"(?m)^\s*(@\w+\s+)*(\w+\s+)?import\s+((struct|class|enum|protocol|func|var|typealias)\s+)?"# + library + #"\b"#,
                             options: .regularExpression) != nil
                && !(path as NSString).lastPathComponent.hasPrefix(prefix) {
                violations.append(path)
            }
        }
        #expect(violations.isEmpty, "\(library) outside the \(prefix) engine files: \(violations)")
    }
}
