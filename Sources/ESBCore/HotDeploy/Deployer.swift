import Crypto
import ESBService
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
    /// What each unit serves in this process: an unchanged redeploy is a no-op.
    private var serving: [String: (hash: String, services: [String])] = [:]

    public init(builder: ServiceBuilder, registry: ServiceRegistry, store: DeploymentStore, workDirectory: String,
                logger: Logger, backupHistory: @escaping @Sendable () -> Int) {
        self.builder = builder
        self.registry = registry
        self.store = store
        self.logger = logger
        self.backupHistory = backupHistory
        artifactsDirectory = workDirectory + "/artifacts"
    }

    /// The outcome of one deployment.
    public struct Outcome: Sendable, Codable {
        public var unit: String
        /// `deployed` or `failed`.
        public var status: String
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

    /// The last deployment started for each unit. The actor is reentrant while a compile
    /// runs, so different files build in parallel; versions of one file must not overtake
    /// each other, so each waits for the previous one.
    private var tails: [String: Task<Outcome, Never>] = [:]

    private func serialized(_ unit: String, _ work: @escaping @Sendable () async -> Outcome) async -> Outcome {
        let previous = tails[unit]
        let task = Task {
            _ = await previous?.value
            return await work()
        }
        tails[unit] = task
        let outcome = await task.value
        if tails[unit] == task { tails[unit] = nil }
        return outcome
    }

    /// `isRestore`: the version is already recorded as serving; only failures are recorded.
    private func deploy(fileName: String, source: Data, displayPath: String?, isRestore: Bool) async -> Outcome {
        let kind = "service"
        let hash = SHA256.hash(data: source).hex
        let display = displayPath ?? fileName
        if !isRestore { quarantined[fileName] = nil }
        if let current = serving[fileName], current.hash == hash {
            return Outcome(unit: fileName, status: "deployed", services: current.services, error: nil, cached: true)
        }
        do {
            let (library, cached) = try await buildOrCopy(fileName: fileName, source: source, display: display, hash: hash)
            let plugin: ServicePlugin
            do {
                plugin = try PluginLoader.load(path: library)
            } catch {
                throw DeployError(.loadFailed, "\(display): \(error)")
            }
            let names = try validate(plugin.services, unit: fileName, display: display)
            registry.replace(unit: fileName, with: plugin.services)
            serving[fileName] = (hash, names)
            if !isRestore {
                try await store.recordDeployed(unit: fileName, kind: kind, hash: hash, source: source, services: names,
                                               keep: backupHistory())
            }
            logger.notice("deployed", metadata: ["esb.unit": "\(fileName)", "esb.services": "\(names.joined(separator: ","))",
                                                 "esb.cached": "\(cached)"])
            return Outcome(unit: fileName, status: "deployed", services: names, error: nil, cached: cached)
        } catch {
            let message = (error as? DeployError)?.message ?? "\(display): \(error)"
            logger.error("deployment failed; the previous version, if any, keeps serving",
                         metadata: ["esb.unit": "\(fileName)", "esb.error": "\(message)"])
            try? await store.recordFailed(unit: fileName, kind: kind, hash: hash, source: source, error: message)
            return Outcome(unit: fileName, status: "failed", services: [], error: message, cached: false)
        }
    }

    /// Deploys a file found in the pickup directory at start, unless it is a quarantined
    /// unit's unchanged content: quarantine lasts until the unit is deployed again.
    public func deployAtStart(fileName: String, source: Data, displayPath: String) async -> Outcome? {
        if let hash = quarantined[fileName], hash == SHA256.hash(data: source).hex {
            logger.warning("not loading a quarantined unit found in the pickup directory", metadata: ["esb.unit": "\(fileName)"])
            return nil
        }
        return await deploy(fileName: fileName, source: source, displayPath: displayPath)
    }


    /// Units quarantined by crashes, with the hash of the content that crashed.
    private var quarantined: [String: String] = [:]

    /// Redeploys every unit recorded in the ODB, oldest first, from cached artifacts where
    /// possible; quarantined units stay unloaded.
    /// - Returns: the outcomes, in order.
    public func restore() async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for unit in try await store.units() where unit.version != nil {
            if unit.status == "quarantined" {
                quarantined[unit.name] = unit.hash
                registry.markInactive(unit.services, reason: "its unit '\(unit.name)' is quarantined; deploy it again to load it")
                logger.error("unit quarantined, not loaded", metadata: ["esb.unit": "\(unit.name)", "esb.error": "\(unit.error ?? "")"])
                continue
            }
            guard let source = try await store.servingSource(unit: unit.name) else { continue }
            outcomes.append(await deploy(fileName: unit.name, source: source, displayPath: nil, isRestore: true))
        }
        return outcomes
    }

    private func buildOrCopy(fileName: String, source: Data, display: String, hash: String) async throws -> (String, Bool) {
        switch (fileName as NSString).pathExtension {
        case "swift":
            let artifact = try await builder.build(fileName: fileName, source: source, displayPath: display)
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
