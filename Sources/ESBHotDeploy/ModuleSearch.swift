import Foundation

/// A built library module from `pickup/lib/NAME/`: `NAME.swiftmodule` and
/// `lib<linkName>.so` in its own artifact directory.
///
/// Every version gets its own file and soname (`NAME_<key>`) while the module stays `NAME`:
/// a unit built against a new version then loads that version, not one already in memory.
public struct LibraryArtifact: Sendable, Equatable {
    /// The module name services import.
    public var name: String
    /// The content key (sources, toolchain, and the keys of the libraries it imports).
    public var key: String
    public var directory: String
    public var linkName: String
    /// The libraries it imports.
    public var imports: [String]

    public var library: String { "\(directory)/lib\(linkName).so" }
}

/// Where imported modules come from: libraries of the pickup directory, then the prebuilt
/// modules of `[hot_deploy] extra_module_paths`.
struct ModuleSearch: Sendable {
    var libraries: [String: LibraryArtifact]
    var extraPaths: [String]

    /// What a unit importing `imports` compiles and links with.
    struct Resolved: Sendable, Equatable {
        var arguments: [String] = []
        /// The libraries imported directly (recorded as the unit's dependencies).
        var libraries: [String] = []
        /// Prebuilt modules found on the extra paths, as `NAME@DIR`.
        var prebuilt: [String] = []
        /// Keys every cached artifact of the unit depends on.
        var fingerprint: String = ""
    }

    func resolve(_ imports: [String]) -> Resolved {
        var resolved = Resolved()
        var searchDirectories: [String] = []
        var fingerprint: [String] = []
        // Library modules imported by imported libraries must be found too (their interfaces mention them).
        var pending = imports.filter { libraries[$0] != nil }
        var seen: Set<String> = []
        while let name = pending.popLast() {
            guard seen.insert(name).inserted, let library = libraries[name] else { continue }
            searchDirectories.append(library.directory)
            fingerprint.append("\(name)=\(library.key)")
            pending += library.imports
        }
        for name in imports where libraries[name] != nil {
            let library = libraries[name]!
            resolved.libraries.append(name)
            resolved.arguments += ["-L", library.directory, "-l\(library.linkName)", "-Xlinker", "-rpath", "-Xlinker", library.directory]
        }
        for name in imports where libraries[name] == nil {
            guard let directory = extraPaths.first(where: { FileManager.default.fileExists(atPath: "\($0)/\(name).swiftmodule") }) else { continue }
            searchDirectories.append(directory)
            resolved.prebuilt.append("\(name)@\(directory)")
            let module = "\(directory)/\(name).swiftmodule"
            let stamp = (try? FileManager.default.attributesOfItem(atPath: module)).map { "\($0[.size] ?? 0)-\(($0[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)" } ?? ""
            fingerprint.append("\(name)@\(directory)=\(stamp)")
            if FileManager.default.fileExists(atPath: "\(directory)/lib\(name).so") {
                resolved.arguments += ["-L", directory, "-l\(name)", "-Xlinker", "-rpath", "-Xlinker", directory]
            }
        }
        var seenDirectories: Set<String> = []
        for directory in searchDirectories where seenDirectories.insert(directory).inserted {
            resolved.arguments = ["-I", directory] + resolved.arguments
        }
        resolved.fingerprint = fingerprint.sorted().joined(separator: ",")
        return resolved
    }

    /// A cycle through `name`'s imports (`A → B → A`), if any, given the imports of the
    /// libraries known now plus `name`'s own.
    static func cycle(from name: String, imports: [String], known: [String: [String]]) -> [String]? {
        var graph = known
        graph[name] = imports
        var path: [String] = [name]
        func visit(_ node: String) -> [String]? {
            for next in graph[node] ?? [] {
                if next == name { return path + [name] }
                guard !path.contains(next) else { continue }
                path.append(next)
                if let found = visit(next) { return found }
                path.removeLast()
            }
            return nil
        }
        return visit(name)
    }

    /// A hint for compiler output that could not find a module.
    static func hint(forDiagnostics diagnostics: String, extraPaths: [String]) -> String? {
        guard let range = diagnostics.range(of: "no such module '") else {
            if diagnostics.contains("compiled with Swift") || diagnostics.contains("cannot load module") && diagnostics.contains("built with") {
                return "a prebuilt module on extra_module_paths was built with another Swift toolchain; rebuild it with this server's swiftc"
            }
            return nil
        }
        let name = diagnostics[range.upperBound...].prefix { $0 != "'" }
        let paths = extraPaths.isEmpty ? "none configured" : extraPaths.joined(separator: ":")
        return "no library '\(name)' in the pickup directory's lib/ and no prebuilt module '\(name)' on extra_module_paths (\(paths))"
    }
}

/// The files of one library (`pickup/lib/NAME/*.swift`) as one unit of the registry: stored as
/// a JSON object of file name to text (sorted keys, so equal content hashes equally).
struct LibrarySource: Sendable, Equatable {
    var name: String
    var files: [String: String]

    var unit: String { "lib/\(name)" }

    var blob: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(files)) ?? Data()
    }

    init(name: String, files: [String: String]) {
        self.name = name
        self.files = files
    }

    init?(unit: String, blob: Data) {
        guard unit.hasPrefix("lib/"), let files = try? JSONDecoder().decode([String: String].self, from: blob) else { return nil }
        self.init(name: String(unit.dropFirst(4)), files: files)
    }

    /// Reads `directory`'s `.swift` files (not hidden ones).
    static func read(name: String, directory: String) -> LibrarySource {
        var files: [String: String] = [:]
        for file in ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        where file.hasSuffix(".swift") && !file.hasPrefix(".") {
            if let text = try? String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8) { files[file] = text }
        }
        return LibrarySource(name: name, files: files)
    }

    /// The libraries its files import (among `known`).
    func imports(among known: Set<String>) -> [String] {
        var modules: [String] = []
        for text in files.values.sorted() {
            for module in ServiceScanner.imports(text) where known.contains(module) && module != name && !modules.contains(module) {
                modules.append(module)
            }
        }
        return modules.sorted()
    }
}
