import ESBConfig
import ESBHotDeploy
import ESBStore
import Foundation

/// `esb odb copy`: every object, the deployment registry and the pending async work of one
/// ODB, written into another that is empty (SQLite → PostgreSQL, to grow one server into a
/// cluster). Both are held first, so that no server runs on either while it copies, then
/// migrated to this build's schema. Secrets are opened with the source's key and sealed again
/// with the target's. The source is otherwise only read.
public enum ODBCopy {
    /// What was copied, and what was not, for the operator.
    public struct Report: Sendable {
        /// Objects written into the target.
        public var objects = 0
        /// Secrets opened with the source's key and sealed with the target's.
        public var secrets = 0
        /// Units whose serving version was written into the target's registry.
        public var units = 0
        /// Units that are not copied, each with the reason.
        public var skippedUnits: [(name: String, reason: String)] = []
        /// The services of the units not copied.
        var skippedServices = Set<String>()
        /// Async records with work left, written into the target.
        public var asyncRecords = 0
        /// Steps a stopped server was running: due again on the target, with `redelivered`
        /// for callbacks.
        public var interrupted = 0
        /// Copied async records whose next step calls a service of a skipped unit: they wait
        /// on the target until a server deploys it.
        public var waitingForSkippedUnits = 0
        /// Finished async records (their history), which are not copied.
        public var finishedNotCopied = 0
        /// Scheduled jobs' next run times and run counts (their run history is not copied).
        public var jobSchedules = 0
    }

    /// In the target's `esb_meta` while a copy writes into it: no server starts on a half copy.
    public static let inProgressKey = "copy_in_progress"
    /// In the source's `esb_meta` once copied: no server starts on it again, which would run
    /// the pending work the target now runs.
    public static let copiedToKey = "copied_to"

    /// Why no server may start on `odb`, when a copy marked it; nil when none did.
    public static func refusal(_ odb: ODB) async throws -> String? {
        if let copy = try await odb.meta(inProgressKey) {
            return "ODB \(odb.location) holds an unfinished copy (esb odb copy \(copy)): start no server on it; "
                + "empty it (a new database or file) and copy again"
        }
        if let target = try await odb.meta(copiedToKey) {
            return "ODB \(odb.location) was copied into \(target) by esb odb copy: its pending work runs there now and would "
                + "run twice. Point [odb] at the copy; to serve from this ODB anyway, delete the mark first "
                + "(DELETE FROM esb_meta WHERE key = '\(copiedToKey)')"
        }
        return nil
    }

    /// The job's name in a refusal ("Stop the server before …").
    static let job = "copying its ODB (esb odb copy)"
    /// Async records read and written at a time.
    static let page = 500

    /// Copies `source` into `target`, both opened without migrating (``ODB/open(config:logger:migrate:attempt:)``).
    /// - Throws: ``ODBCopyError`` naming what stopped the copy: a server running on either
    ///   ODB, a target that is not empty, a secret the source key cannot open, an ODB error.
    ///   A copy stopped part way leaves the target partly written, and says so.
    /// `recentlySeen`: a server seen this lately without a clean stop counts as running (at
    /// least the cluster's `lease_seconds`).
    public static func run(from source: ODB, sourceSecrets: SecretBox, to target: ODB, targetSecrets: SecretBox,
                           recentlySeen: Duration = .seconds(60),
                           progress: @Sendable (String) -> Void = { _ in }) async throws(ODBCopyError) -> Report {
        let holds: [ClusterMembership.ODBHold]
        do {
            holds = [try await ClusterMembership.holdWithNoServer(odb: source, for: job, recentlySeen: recentlySeen),
                     try await ClusterMembership.holdWithNoServer(odb: target, for: job, recentlySeen: recentlySeen)]
        } catch {
            throw ODBCopyError(error.message)
        }
        do {
            let report = try await copy(from: source, sourceSecrets: sourceSecrets, to: target, targetSecrets: targetSecrets,
                                        progress: progress)
            for hold in holds { await hold.release() }
            return report
        } catch {
            for hold in holds { await hold.release() }
            throw error
        }
    }

    private static func copy(from source: ODB, sourceSecrets: SecretBox, to target: ODB, targetSecrets: SecretBox,
                             progress: @Sendable (String) -> Void) async throws(ODBCopyError) -> Report {
        for odb in [source, target] {
            do {
                try await odb.migrate()
            } catch {
                throw ODBCopyError(error.message)
            }
        }

        let sourceObjects = ObjectStore(odb: source, secrets: sourceSecrets, kinds: ObjectKinds.all)
        let targetObjects = ObjectStore(odb: target, secrets: targetSecrets, kinds: ObjectKinds.all)
        let sourceUnits = DeploymentStore(odb: source), targetUnits = DeploymentStore(odb: target)
        let sourceAsync = AsyncStore(odb: source, server: ""), targetAsync = AsyncStore(odb: target, server: "")

        try await refuseUnlessEmpty(target, objects: targetObjects, units: targetUnits, async: targetAsync)

        let started = Date().ISO8601Format()
        do {
            try await target.setMeta(inProgressKey, "from \(source.location), started \(started)")
        } catch {
            throw ODBCopyError("cannot write into the target ODB \(target.location): \(StoreError.describe(error))")
        }
        var report = Report()
        var written = false
        do {
            try await copyObjects(from: sourceObjects, sourceSecrets: sourceSecrets, to: targetObjects,
                                  targetSecrets: targetSecrets, report: &report, written: &written)
            progress("objects: \(report.objects) (\(report.secrets) secret(s) sealed with the target's key)")
            try await copyUnits(from: sourceUnits, to: targetUnits, report: &report, written: &written)
            progress("deployment units: \(report.units)")
            report.jobSchedules = try await Scheduler.copySchedules(from: source, to: target)
            progress("scheduled jobs' schedules: \(report.jobSchedules)")
            try await copyAsync(from: sourceAsync, to: targetAsync, report: &report, written: &written)
            progress("pending async invocations: \(report.asyncRecords)")
            report.finishedNotCopied = max(0, try await sourceAsync.counts().values.reduce(0, +) - report.asyncRecords)
            // The source is marked before the target is released: at no moment may both serve.
            try await source.setMeta(copiedToKey, "\(target.location) on \(started)")
            try await target.setMeta(inProgressKey, nil)
        } catch {
            if !written { try? await target.setMeta(inProgressKey, nil) }
            let message = (error as? ODBCopyError)?.message ?? StoreError.describe(error)
            throw ODBCopyError(written
                ? "\(message)\nThe target ODB \(target.location) now holds part of the copy: empty it (a new database or file) and copy again"
                : message)
        }
        return report
    }

    private static func refuseUnlessEmpty(_ odb: ODB, objects: ObjectStore, units: DeploymentStore,
                                          async: AsyncStore) async throws(ODBCopyError) {
        var held: [String] = []
        do {
            var objectCount = 0
            for kind in ObjectKinds.all { objectCount += try await objects.records.list(kind: kind.name).count }
            if objectCount > 0 { held.append("\(objectCount) object(s)") }
            let unitCount = try await units.units().count
            if unitCount > 0 { held.append("\(unitCount) deployment unit(s)") }
            let recordCount = try await async.counts().values.reduce(0, +)
            if recordCount > 0 { held.append("\(recordCount) async invocation(s)") }
        } catch {
            throw ODBCopyError("cannot read the target ODB \(odb.location): \(StoreError.describe(error))")
        }
        guard held.isEmpty else {
            throw ODBCopyError("the target ODB \(odb.location) is not empty: it holds \(held.joined(separator: ", ")). "
                + "Copy into a new, empty database or file")
        }
    }

    /// Every object in one transaction, with its secret sealed again.
    private static func copyObjects(from source: ObjectStore, sourceSecrets: SecretBox, to target: ObjectStore,
                                    targetSecrets: SecretBox, report: inout Report, written: inout Bool) async throws {
        var writes: [ObjectWrite] = []
        for kind in ObjectKinds.all {
            for object in try await source.records.list(kind: kind.name) {
                var sealed: String?
                if let secret = object.sealedSecret {
                    let plain: String
                    do {
                        plain = try sourceSecrets.open(secret)
                    } catch {
                        throw ODBCopyError("\(kind.name) '\(object.name)': the --from server's [crypto] key cannot decrypt its secret: \(error)")
                    }
                    sealed = try targetSecrets.seal(plain)
                    report.secrets += 1
                }
                writes.append(ObjectWrite(action: .insert(body: object.body), kind: kind.name, name: object.name,
                                          sealedSecret: sealed))
            }
        }
        guard !writes.isEmpty else { return }
        let all = writes
        written = true
        try await target.records.transact(reading: []) { _ in (all, ()) }
        report.objects = all.count
    }

    /// Each unit's serving version, oldest unit first (libraries before their dependents).
    private static func copyUnits(from source: DeploymentStore, to target: DeploymentStore,
                                  report: inout Report, written: inout Bool) async throws {
        for unit in try await source.units() {
            guard unit.status != .quarantined else {
                report.skippedUnits.append((unit.name, "quarantined after crashes; deploy it again once fixed"))
                report.skippedServices.formUnion(unit.services)
                continue
            }
            guard let hash = unit.hash, unit.version != nil, let code = try await source.servingSource(unit: unit.name) else {
                report.skippedUnits.append((unit.name, "no version serves (\(unit.error ?? "failed"))"))
                report.skippedServices.formUnion(unit.services)
                continue
            }
            written = true
            try await target.recordDeployed(unit: unit.name, kind: unit.kind, hash: hash, source: code,
                                            services: unit.services, imports: unit.imports, keep: 0)
            report.units += 1
        }
    }

    /// The service a record's next step calls: its target while attempts are left, else its callback.
    private static func nextService(_ record: AsyncRecord) -> String? {
        record.status == .pending || record.status == .running ? record.target : record.callback
    }

    /// Every record with work left, page by page; a step the stopped server was running is
    /// due again.
    private static func copyAsync(from source: AsyncStore, to target: AsyncStore,
                                  report: inout Report, written: inout Bool) async throws {
        var after: String?
        let now = AsyncRecord.now()
        while true {
            let records = try await source.records.unfinished(after: after, limit: page)
            for var record in records {
                if record.status == .running || record.callbackStatus == .running {
                    record.interrupt(now: now)
                    report.interrupted += 1
                }
                written = true
                try await target.records.insert(record)
                report.asyncRecords += 1
                if let service = nextService(record), report.skippedServices.contains(service) { report.waitingForSkippedUnits += 1 }
            }
            guard records.count == page, let last = records.last else { return }
            after = last.cid
        }
    }
}

/// Why `esb odb copy` stopped.
public struct ODBCopyError: Error, Sendable, CustomStringConvertible {
    /// What stopped the copy, naming the ODB, object or unit.
    public var message: String
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}
