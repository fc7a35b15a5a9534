import Crypto
import ESBConcurrency
import ESBService
import ESBStore
import Foundation
import Logging

/// Deploys units (service files) into the live registry and records them in the ODB.
///
/// An actor: deployments of different files are serialised, so two files racing for one
/// service name resolve deterministically and the registry and ODB always agree.
public actor Deployer {
    private let builder: ServiceBuilder
    private let registry: ServiceRegistry
    private let store: DeploymentStore
    private let logger: Logger
    private let backupHistory: @Sendable () -> Int
    private let artifactsDirectory: String
    private let extraModulePaths: @Sendable () -> [String]
    /// What this process knows of each unit, by unit name.
    private var units: [String: UnitState] = [:]
    /// Deployments by unit. The actor is reentrant while a compile runs, so different files
    /// build in parallel; versions of one file must not overtake each other, so each waits
    /// for the previous one.
    private let deployments = SerialTasks<String>()

    /// One unit in this process.
    private struct UnitState {
        /// The version serving, if any.
        var serving: Serving?
        /// While the unit is quarantined by crashes: the hash of the content that crashed.
        var quarantinedHash: String?
        /// When the registry recorded its serving version (at restore).
        var recordedAt: Date?
    }

    /// A serving version: an unchanged redeploy (same hash, same modules) is a no-op.
    private struct Serving {
        var hash: String
        var services: [String]
        /// The fingerprint of the modules it was built against.
        var modules: String
        /// The libraries it imports, and its source: it is rebuilt when one of them changes.
        var imports: [String]
        var source: Data
        /// For a library unit: the built module.
        var library: LibraryArtifact?
    }

    /// The serving libraries, by module name.
    private var libraries: [String: LibraryArtifact] {
        Dictionary(units.values.compactMap { $0.serving?.library }.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public init(builder: ServiceBuilder, registry: ServiceRegistry, store: DeploymentStore, workDirectory: String,
                logger: Logger, backupHistory: @escaping @Sendable () -> Int,
                extraModulePaths: @escaping @Sendable () -> [String] = { [] }) {
        self.builder = builder
        self.registry = registry
        self.store = store
        self.logger = logger
        self.backupHistory = backupHistory
        self.extraModulePaths = extraModulePaths
        artifactsDirectory = workDirectory + "/artifacts"
    }

    private var search: ModuleSearch { ModuleSearch(libraries: libraries, extraPaths: extraModulePaths()) }

    /// The outcome of one deployment.
    public struct Outcome: Sendable, Codable {
        public var unit: String
        /// ``UnitStatus/deployed`` or ``UnitStatus/failed``.
        public var status: UnitStatus
        public var services: [String]
        public var error: String?
        /// Whether the compiled library came from the cache.
        public var cached: Bool
    }

    /// Deploys `source` as unit `fileName` (a `.swift` source or a prebuilt `.so`).
    /// On failure the previous version keeps serving and the failure is recorded.
    public func deploy(fileName: String, source: Data, displayPath: String? = nil) async -> Outcome {
        await serialized(fileName) {
            await self.deploy(fileName: fileName, source: source, displayPath: displayPath, isRestore: false)
        }
    }

    private func serialized(_ unit: String, _ work: @escaping @Sendable () async -> Outcome) async -> Outcome {
        await deployments.run(unit, work)
    }

    /// `isRestore`: the version is already recorded as serving; only failures are recorded.
    /// `following`: another server deployed it; a failure here is this server's alone.
    private func deploy(fileName: String, source: Data, displayPath: String?, isRestore: Bool,
                        following: Bool = false) async -> Outcome {
        let kind = UnitKind.service
        let hash = SHA256.hash(data: source).hex
        let display = displayPath ?? fileName
        if !isRestore { units[fileName, default: UnitState()].quarantinedHash = nil }
        let modules = fileName.hasSuffix(".swift")
            ? search.resolve(ServiceScanner.imports(String(decoding: source, as: UTF8.self))) : ModuleSearch.Resolved()
        if let current = units[fileName]?.serving, current.hash == hash, current.modules == modules.fingerprint {
            return Outcome(unit: fileName, status: .deployed, services: current.services, error: nil, cached: true)
        }
        do {
            await builder.setExtraPaths(extraModulePaths())
            let (library, cached) = try await buildOrCopy(fileName: fileName, source: source, display: display, hash: hash,
                                                          modules: modules)
            let plugin: ServicePlugin
            do {
                plugin = try PluginLoader.load(path: library)
            } catch {
                throw DeployError(.loadFailed, "\(display): \(error)")
            }
            let names = try validate(plugin.services, unit: fileName, display: display)
            // Recorded before it serves: a version the registry could not record (the ODB is
            // down) fails and the previous one keeps serving, here as on the other servers.
            if !isRestore {
                try await store.recordDeployed(unit: fileName, kind: kind, hash: hash, source: source, services: names,
                                               imports: modules.libraries, keep: backupHistory())
            }
            registry.replace(unit: fileName, with: plugin.services)
            units[fileName, default: UnitState()].serving = Serving(hash: hash, services: names, modules: modules.fingerprint,
                                                                    imports: modules.libraries, source: source)
            logger.notice("deployed", metadata: ["esb.unit": "\(fileName)", "esb.services": "\(names.joined(separator: ","))",
                                                 "esb.cached": "\(cached)"])
            await recordOnThisServer(fileName, hash: hash, .deployed, error: nil)
            return Outcome(unit: fileName, status: .deployed, services: names, error: nil, cached: cached)
        } catch {
            let message = (error as? DeployError)?.message ?? "\(display): \(error)"
            logger.error("deployment failed; the previous version, if any, keeps serving",
                         metadata: ["esb.unit": "\(fileName)", "esb.error": "\(message)"])
            if !following { try? await store.recordFailed(unit: fileName, kind: kind, hash: hash, source: source, error: message) }
            await recordOnThisServer(fileName, hash: hash, .failed, error: message)
            return Outcome(unit: fileName, status: .failed, services: [], error: message, cached: false)
        }
    }

    /// Deploys a file found in the pickup directory at start, unless it is a quarantined
    /// unit's unchanged content: quarantine lasts until the unit is deployed again.
    /// A file last modified before the registry recorded another version of its unit (through
    /// the API, another server, or a later drop) is not deployed again: it would roll back
    /// that version, on every server of a cluster.
    public func deployAtStart(fileName: String, source: Data, displayPath: String, modified: Date) async -> Outcome? {
        let hash = SHA256.hash(data: source).hex
        if let quarantined = units[fileName]?.quarantinedHash, quarantined == hash {
            logger.warning("not loading a quarantined unit found in the pickup directory", metadata: ["esb.unit": "\(fileName)"])
            return nil
        }
        if let state = units[fileName], let serving = state.serving, serving.hash != hash,
           let recorded = state.recordedAt, modified < recorded {
            logger.warning("pickup file is older than the version of its unit deployed since; not deployed again (drop it again to deploy it)",
                           metadata: ["esb.unit": "\(fileName)", "esb.file": "\(displayPath)",
                                      "esb.file_modified": "\(modified.ISO8601Format())", "esb.recorded": "\(recorded.ISO8601Format())"])
            return nil
        }
        return await deploy(fileName: fileName, source: source, displayPath: displayPath)
    }

    /// Redeploys every unit recorded in the ODB, oldest first, from cached artifacts where
    /// possible; quarantined units stay unloaded.
    /// - Returns: the outcomes, in order.
    public func restore() async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for unit in Self.restoreOrder(try await store.units()) where unit.version != nil {
            if unit.status == .quarantined {
                units[unit.name, default: UnitState()].quarantinedHash = unit.hash
                registry.markInactive(unit.services, reason: "its unit '\(unit.name)' is quarantined; deploy it again to load it")
                logger.error("unit quarantined, not loaded", metadata: ["esb.unit": "\(unit.name)", "esb.error": "\(unit.error ?? "")"])
                continue
            }
            guard let (source, recordedAt) = try await store.serving(unit: unit.name) else { continue }
            // When its serving version was recorded (a later failed attempt does not count).
            units[unit.name, default: UnitState()].recordedAt = recordedAt
            if unit.kind == .library, let library = LibrarySource(unit: unit.name, blob: source) {
                outcomes.append(await deployLibrary(library, display: unit.name, isRestore: true))
            } else {
                outcomes.append(await deploy(fileName: unit.name, source: source, displayPath: nil, isRestore: true))
            }
        }
        return outcomes
    }

    /// Deploys what another server of the cluster deployed: the serving version of `unit`,
    /// or of every unit when `unit` is nil (after missed announcements), each unless it
    /// already serves here. A unit that fails here keeps its previous version here, and its
    /// failure is this server's alone (`servers` in the registry).
    public func follow(unit: String?) async {
        let recorded: [DeploymentStore.Unit]
        do {
            recorded = try await store.units()
        } catch {
            logger.error("cannot read the deployment registry to follow other servers' deployments", metadata: ["esb.error": "\(error)"])
            return
        }
        let chosen = unit.map { name in recorded.filter { $0.name == name } } ?? Self.restoreOrder(recorded)
        for unit in chosen where unit.version != nil && unit.status != .quarantined {
            // Read and compared in the unit's turn, so a local deployment running meanwhile is
            // not overtaken by the version it replaces.
            _ = await serialized(unit.name) { await self.followOne(unit) }
        }
    }

    private func followOne(_ unit: DeploymentStore.Unit) async -> Outcome {
        let unchanged = Outcome(unit: unit.name, status: .deployed, services: unit.services, error: nil, cached: true)
        let source: Data
        do {
            guard let serving = try await store.servingSource(unit: unit.name) else { return unchanged }
            source = serving
        } catch {
            logger.error("cannot read a unit another server deployed", metadata: ["esb.unit": "\(unit.name)", "esb.error": "\(error)"])
            return Outcome(unit: unit.name, status: .failed, services: [], error: "\(error)", cached: false)
        }
        if units[unit.name]?.serving?.hash == SHA256.hash(data: source).hex { return unchanged }
        logger.info("deploying what another server of the cluster deployed", metadata: ["esb.unit": "\(unit.name)"])
        if unit.kind == .library, let library = LibrarySource(unit: unit.name, blob: source) {
            return await deployLibrary(library, display: unit.name, isRestore: true, following: true)
        }
        return await deploy(fileName: unit.name, source: source, displayPath: nil, isRestore: true, following: true)
    }

    /// Records the unit's status on this server; the ODB being unreachable only costs the
    /// per-server status, which the next deployment records again.
    private func recordOnThisServer(_ unit: String, hash: String, _ status: UnitStatus, error: String?) async {
        do {
            try await store.recordOnThisServer(unit: unit, hash: hash, status: status, error: error)
        } catch {
            logger.warning("cannot record the unit's status on this server", metadata: ["esb.unit": "\(unit)", "esb.error": "\(error)"])
        }
    }

    private func buildOrCopy(fileName: String, source: Data, display: String, hash: String,
                             modules: ModuleSearch.Resolved) async throws -> (String, Bool) {
        switch (fileName as NSString).pathExtension {
        case "swift":
            let artifact = try await builder.build(fileName: fileName, source: source, displayPath: display, modules: modules)
            return (artifact.library, artifact.cached)
        case "so":
            // Keep our own copy by content: the pickup file may be deleted or replaced.
            let directory = "\(artifactsDirectory)/so-\(hash)"
            let library = "\(directory)/\(fileName)"
            if FileManager.default.fileExists(atPath: library) { return (library, true) }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try source.write(to: URL(fileURLWithPath: library), options: .atomic)
            return (library, false)
        default:
            throw DeployError(.unsupportedFile, "\(display): only .swift and .so files are deployed")
        }
    }

    // MARK: Libraries

    /// Deploys the library in `directory` (`pickup/lib/NAME`) as module `NAME`, then rebuilds
    /// every unit that imports it, libraries first, each one atomically: a unit that fails
    /// to build against the new version keeps serving its previous one. A library that
    /// fails leaves its dependents untouched.
    public func deployLibrary(name: String, directory: String) async -> Outcome {
        let source = LibrarySource.read(name: name, directory: directory)
        return await serialized(source.unit) { await self.deployLibrary(source, display: directory, isRestore: false) }
    }

    private func deployLibrary(_ source: LibrarySource, display: String, isRestore: Bool, following: Bool = false) async -> Outcome {
        let unit = source.unit, blob = source.blob
        let hash = SHA256.hash(data: blob).hex
        let imports = source.imports(among: Set(libraries.keys))
        let modules = search.resolve(imports)
        if let current = units[unit]?.serving, current.hash == hash, current.modules == modules.fingerprint {
            return Outcome(unit: unit, status: .deployed, services: [], error: nil, cached: true)
        }
        do {
            if let cycle = ModuleSearch.cycle(from: source.name, imports: imports, known: libraries.mapValues(\.imports)) {
                throw DeployError(.importCycle, "\(display): libraries import each other in a cycle: \(cycle.joined(separator: " → "))")
            }
            await builder.setExtraPaths(extraModulePaths())
            let (artifact, cached) = try await builder.buildLibrary(source, displayDirectory: display, modules: modules)
            // Load it now, before any service that imports it: a library that cannot load fails here.
            guard dlopen(artifact.library, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) != nil else {
                throw DeployError(.loadFailed, "\(display): cannot load \(artifact.library): \(String(cString: dlerror()))")
            }
            if !isRestore {
                try await store.recordDeployed(unit: unit, kind: .library, hash: hash, source: blob, services: [],
                                               imports: imports, keep: backupHistory())
            }
            units[unit, default: UnitState()].serving = Serving(hash: hash, services: [], modules: modules.fingerprint,
                                                                imports: imports, source: blob, library: artifact)
            logger.notice("library deployed", metadata: ["esb.unit": "\(unit)", "esb.cached": "\(cached)",
                                                         "esb.imports": "\(imports.joined(separator: ","))"])
            await recordOnThisServer(unit, hash: hash, .deployed, error: nil)
            await redeployDependents(of: source.name)
            return Outcome(unit: unit, status: .deployed, services: [], error: nil, cached: cached)
        } catch {
            let message = (error as? DeployError)?.message ?? "\(display): \(error)"
            logger.error("library deployment failed; it and the units importing it keep their previous versions",
                         metadata: ["esb.unit": "\(unit)", "esb.error": "\(message)"])
            if !following { try? await store.recordFailed(unit: unit, kind: .library, hash: hash, source: blob, error: message) }
            await recordOnThisServer(unit, hash: hash, .failed, error: message)
            return Outcome(unit: unit, status: .failed, services: [], error: message, cached: false)
        }
    }

    /// Rebuilds the serving units that import `library`: libraries first, then services.
    private func redeployDependents(of library: String) async {
        let dependents = units.filter { $0.value.serving?.imports.contains(library) == true }.map(\.key)
            .sorted { ($0.hasPrefix("lib/") ? 0 : 1, $0) < ($1.hasPrefix("lib/") ? 0 : 1, $1) }
        for unit in dependents {
            guard let source = units[unit]?.serving?.source else { continue }
            logger.info("rebuilding a unit against a changed library", metadata: ["esb.unit": "\(unit)", "esb.library": "\(library)"])
            if let dependent = LibrarySource(unit: unit, blob: source) {
                _ = await serialized(unit) { await self.deployLibrary(dependent, display: unit, isRestore: true) }
            } else {
                _ = await serialized(unit) { await self.deploy(fileName: unit, source: source, displayPath: nil, isRestore: true) }
            }
        }
    }

    /// Libraries before the units that import them (a library's imports before it), then the
    /// rest in their recorded order.
    static func restoreOrder(_ units: [DeploymentStore.Unit]) -> [DeploymentStore.Unit] {
        let libraries = Dictionary(units.filter { $0.kind == .library }.map { (DeploymentStore.moduleName(ofLibraryUnit: $0.name), $0) },
                                   uniquingKeysWith: { first, _ in first })
        var ordered: [DeploymentStore.Unit] = []
        var placed: Set<String> = []
        func place(_ module: String, _ path: Set<String>) {
            guard let unit = libraries[module], !placed.contains(module), !path.contains(module) else { return }
            for dependency in unit.imports { place(dependency, path.union([module])) }
            placed.insert(module)
            ordered.append(unit)
        }
        for module in libraries.keys.sorted() { place(module, []) }
        return ordered + units.filter { $0.kind != .library }
    }

    private func validate(_ services: [any Service.Type], unit: String, display: String) throws -> [String] {
        let names = services.map { $0.name }
        for name in names {
            if name.isEmpty || name.contains(where: \.isWhitespace) {
                throw DeployError(.invalidName, "\(display): service name '\(name)' must be non-empty without spaces")
            }
            if name.hasPrefix("esb.") {
                throw DeployError(.invalidName, "\(display): service name '\(name)' is reserved (names starting 'esb.' are internal)")
            }
        }
        let repeated = Dictionary(grouping: names, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        if let name = repeated.first {
            throw DeployError(.duplicateService, "\(display): service name '\(name)' is defined twice in this file")
        }
        if let conflict = registry.conflicts(unit: unit, names: names).first {
            throw DeployError(.duplicateService,
                              "\(display): service '\(conflict.name)' is already deployed from '\(conflict.owner)'; '\(unit)' cannot define it too")
        }
        return names
    }
}
