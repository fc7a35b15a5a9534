@_spi(ESBHost) import ESBService
import ESBConcurrency
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// What the admin API, the dashboard and `esb odb copy` ask of the scheduler.
extension Scheduler {
    /// The records of `odb`, as server `server` uses them.
    static func records(_ odb: ODB, server: String, leaseMS: Int64 = 30_000) -> any SchedulerRecords {
        switch odb.connection {
        case .sqlite(let pool): SQLiteSchedulerRecords(pool: pool, server: server)
        case .postgresql(let postgres): PostgresSchedulerRecords(odb: postgres, server: server, leaseMS: leaseMS)
        }
    }

    /// For `esb odb copy` (servers stopped, objects already copied): each job's next run time,
    /// anchor and runs done, so that jobs go on where they were (a run going at the copy is
    /// not). Returns how many were copied.
    static func copySchedules(from source: ODB, to target: ODB) async throws -> Int {
        var states = try await records(source, server: "").states().values.map { state in
            var copied = state
            (copied.runningCID, copied.runningServer, copied.runningSince) = (nil, nil, nil)
            return copied
        }
        states.sort { $0.job < $1.job }
        try await records(target, server: "").insertCopied(states)
        return states.count
    }



    /// Runs the job now, whatever its schedule (its next run time stays); its service sees
    /// `x-esb-scheduled-at` = now. Returns the run's cid.
    /// - Throws: ``ObjectError`` `not_found` for no such job, `in_use` while a run is going.
    public func execute(_ name: String) async throws -> String {
        let fields = try await store.get(ObjectKinds.scheduler, name)
        let job: JobDefinition
        do throws(JobDefinition.Problem) {
            job = try JobDefinition(fields)
        } catch {
            throw ObjectError(.invalid, "scheduled job '\(name)': \(error.field) \(error.reason)", field: error.field)
        }
        let now = JobDefinition.now()
        let run = JobRun(job: name, cid: ServiceInvoker.newCID(), scheduledAt: now, startedAt: now, status: .running, server: server)
        // Reserved before the ODB says it runs: a claim deciding meanwhile sees it busy; the
        // job's current run is asked about once its row is locked.
        running.withLock { _ = $0.reserved.insert(run.cid) }
        defer { running.withLock { _ = $0.reserved.remove(run.cid) } }
        guard try await records.startManual(run, busy: { self.isBusy($0) }) else {
            let state = try await records.states()[name]
            throw ObjectError(.inUse, "scheduled job '\(name)' is running (\(state?.runningCID ?? "?") on \(state?.runningServer ?? "?")); try again when it ended")
        }
        launch(run, job: job)
        return run.cid
    }

    /// Every job with its next run time and last run, for `GET /esb/api/scheduler`.
    public func list() async throws -> [JobListing] {
        let jobs = try await store.list(ObjectKinds.scheduler)
        let states = try await records.states()
        let last = try await records.lastRuns()
        return jobs.map { fields in
            let name = fields["name"]?.string ?? ""
            return JobListing(fields: fields, nextRunAt: states[name]?.nextRunAt, lastRun: last[name], running: states[name]?.runningCID != nil)
        }
    }

    /// One job with its next run time and last run.
    public func job(_ name: String) async throws -> JobListing {
        try await job(name, runs: 1).job
    }

    /// One job with its newest `runs` runs (the first is its last run), read once: the
    /// dashboard's job page shows both.
    public func job(_ name: String, runs limit: Int) async throws -> (job: JobListing, runs: [JobRun]) {
        let fields = try await store.get(ObjectKinds.scheduler, name)
        let state = try await records.states()[name]
        let runs = try await records.runs(job: name, limit: limit)
        return (JobListing(fields: fields, nextRunAt: state?.nextRunAt, lastRun: runs.first, running: state?.runningCID != nil), runs)
    }

    /// A job's runs, newest first (at most ``keptRuns``).
    public func runs(_ name: String) async throws -> [JobRun] {
        _ = try await store.get(ObjectKinds.scheduler, name)
        return try await records.runs(job: name, limit: Self.keptRuns)
    }
}

/// A job as the API lists it: its fields, `next_run_at`, `last_run` and `running`.
public struct JobListing: Sendable, Encodable {
    public var fields: ObjectFields
    public var nextRunAt: Int64?
    public var lastRun: JobRun?
    public var running: Bool

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue _: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for (name, value) in fields { try container.encode(value, forKey: Key(name)) }
        try container.encode(nextRunAt.map(JobDefinition.formatDate), forKey: Key("next_run_at"))
        try container.encode(lastRun, forKey: Key("last_run"))
        try container.encode(running, forKey: Key("running"))
    }
}
