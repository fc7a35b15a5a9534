@_spi(ESBHost) import ESBService
import ESBConcurrency
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs `scheduler` jobs (INTERFACES.md §11): each due run invokes the job's service with
/// channel `scheduler`, the job's `extra` as payload, and headers `x-esb-job` and
/// `x-esb-scheduled-at`.
///
/// Next run times live in the ODB (``SchedulerRecords``) and survive restarts. A run is
/// claimed in the ODB before it starts, which moves the job's next run time past now: after
/// downtime a job runs once (`misfire: run_once`) or waits for its next time (`skip`), never
/// a burst, and in a cluster each due run happens on one server. Runs of one job never
/// overlap: a tick that finds the previous run going is recorded `skipped`. Every run is
/// recorded; the newest ``keptRuns`` per job are kept.
public final class Scheduler: ServiceLifecycle.Service, Sendable, CustomStringConvertible {
    public var description: String { "Scheduler" }

    private let store: ObjectStore
    private let records: any SchedulerRecords
    private let invoker: ServiceInvoker
    private let server: String
    private let lease: Duration
    /// On a shared ODB: the services deployed on this server (it runs their jobs); nil on SQLite.
    private let deployedServices: (@Sendable () -> Set<String>)?
    private let gracefulSeconds: @Sendable () -> Int
    private let logger: Logger
    private let definitions = Mutex<[String: JobDefinition]>([:])
    private let doorbell = Doorbell()
    private let stopping = Atomic<Bool>(false)
    /// Runs in progress on this server, by cid.
    private let running = Mutex<[String: Task<Void, Never>]>([:])
    private let reloads = SerialTasks<Int>()

    /// Runs kept per job.
    public static let keptRuns = 100
    /// Runs are claimed this long before they are due, in one transaction for all of them,
    /// and each starts at its time.
    static let lookahead: Int64 = 20
    /// How overdue a job must be before a server that does not have its service deploys
    /// takes it (to record the failed run: its service is deployed nowhere, or its server died).
    static let foreignAfter: Int64 = 3000
    static let pruneInterval: Duration = .seconds(60)

    public init(store: ObjectStore, odb: ODB, invoker: ServiceInvoker, server: String, lease: Duration,
                deployedServices: (@Sendable () -> Set<String>)?, gracefulSeconds: @escaping @Sendable () -> Int,
                logger: Logger) {
        self.store = store
        switch odb.connection {
        case .sqlite(let pool): records = SQLiteSchedulerRecords(pool: pool, server: server)
        case .postgresql(let postgres):
            records = PostgresSchedulerRecords(odb: postgres, server: server,
                                               leaseMS: lease.components.seconds * 1000)
        }
        self.invoker = invoker
        self.server = server
        self.lease = lease
        self.deployedServices = deployedServices
        self.gracefulSeconds = gracefulSeconds
        self.logger = logger
    }

    /// The scheduler's tables.
    public static let tables = ODBMigration(
        "v11-scheduler", sqlite: SQLiteSchedulerRecords.createTables, postgresql: PostgresSchedulerRecords.createTables)

    /// Loads the jobs now and again after every change to them.
    public func start() async {
        await reload()
        store.observe([ObjectKinds.scheduler]) { [weak self] in await self?.reload() }
    }

    /// Reads the jobs and brings their schedule state in line: new and changed jobs get their
    /// first run time, deleted ones lose their state and runs.
    public func reload() async {
        await reloads.run(0, cancellable: true) { [self] in
            do {
                var loaded: [String: JobDefinition] = [:]
                for fields in try await store.list(ObjectKinds.scheduler) {
                    do throws(JobDefinition.Problem) {
                        let job = try JobDefinition(fields)
                        loaded[job.name] = job
                    } catch {
                        logger.error("scheduled job cannot run", metadata: [
                            "esb.job": "\(fields["name"]?.string ?? "?")", "esb.error": "\(error.field) \(error.reason)"])
                    }
                }
                let now = JobDefinition.now()
                let states = loaded.values.map { job in
                    JobState(job: job.name, scheduleKey: job.scheduleKey, anchor: now, nextRunAt: job.firstRun(now: now, anchor: now),
                             runsDone: 0)
                }
                try await records.sync(states)
                definitions.withLock { $0 = loaded }
            } catch {
                if !Task.isCancelled {
                    logger.error("cannot load scheduled jobs; keeping the current ones", metadata: ["esb.error": "\(error)"])
                }
            }
            doorbell.ring()
        }
    }

    public func run() async throws {
        do {
            let interrupted = try await records.recover(now: JobDefinition.now())
            if interrupted > 0 {
                logger.warning("scheduled runs cut short by the last stop recorded as interrupted", metadata: ["esb.runs": "\(interrupted)"])
            }
        } catch {
            logger.error("cannot record interrupted scheduled runs: \(error)")
        }
        await withGracefulShutdownHandler {
            await loop()
        } onGracefulShutdown: { [self] in
            stopping.store(true, ordering: .relaxed)
            doorbell.ring()
        }
        await finishRunning()
    }

    private func loop() async {
        var lastPrune = ContinuousClock.now - Self.pruneInterval
        var lastTakeOver = ContinuousClock.now - lease
        while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
            if ContinuousClock.now - lastPrune >= Self.pruneInterval {
                lastPrune = .now
                _ = try? await cancelWhenGracefulShutdown { try await self.records.prune(keep: Self.keptRuns) }
            }
            if deployedServices != nil, ContinuousClock.now - lastTakeOver >= lease / 3 {
                lastTakeOver = .now
                if let cut = try? await cancelWhenGracefulShutdown({ try await self.records.takeOver(now: JobDefinition.now(), leaseMS: self.lease.components.seconds * 1000) }), cut > 0 {
                    logger.warning("scheduled runs of a server that stopped or went silent recorded as interrupted", metadata: ["esb.runs": "\(cut)"])
                }
            }
            var wait: Int64 = deployedServices == nil ? 5000 : 1000
            do {
                let jobs = localJobs()
                let now = JobDefinition.now()
                let snapshot = definitions.withLock { $0 }
                let busy = running.withLock { Set($0.keys) }
                let server = server
                let outcomes = try await cancelWhenGracefulShutdown {
                    try await self.records.claim(now: now + Self.lookahead, jobs: jobs, foreignAfter: Self.foreignAfter + Self.lookahead,
                                                 limit: 1000) { states in
                        Self.plan(states, definitions: snapshot, now: now, server: server, busy: busy)
                    }
                }
                for outcome in outcomes { started(outcome, definitions: snapshot) }
                if outcomes.count == 1000 { continue }
                if let next = try await cancelWhenGracefulShutdown({ try await self.records.nextDue(jobs: jobs) }) {
                    // Due but not taken: a job whose change this server has not loaded yet.
                    wait = next <= now + Self.lookahead && outcomes.isEmpty
                        ? 100 : min(wait, max(0, next - JobDefinition.now() - Self.lookahead))
                }
            } catch {
                if stopping.load(ordering: .relaxed) || Task.isCancelled { break }
                logger.error("cannot read due scheduled jobs; trying again", metadata: ["esb.error": "\(error)"])
                wait = 1000
            }
            if wait > 0 { await doorbell.wait(upTo: .milliseconds(wait)) }
        }
    }

    /// The jobs this server runs when due: on a shared ODB those whose service it has deployed.
    private func localJobs() -> [String]? {
        guard let deployedServices else { return nil }
        let services = deployedServices()
        return definitions.withLock { $0.values.filter { services.contains($0.service) }.map(\.name) }
    }

    /// What to do with due jobs: start a run, or record it skipped (the previous run still
    /// going, or missed with `misfire: skip`), and when the job runs next. A job whose
    /// definition this server has not loaded yet is left alone.
    static func plan(_ states: [JobState], definitions: [String: JobDefinition], now: Int64, server: String,
                     busy: Set<String>) -> [ClaimOutcome] {
        states.compactMap { state in
            guard let job = definitions[state.job], job.scheduleKey == state.scheduleKey, let due = state.nextRunAt else { return nil }
            let startAt = max(now, due)
            var outcome = ClaimOutcome(job: state.job, nextRunAt: nil, runsDone: state.runsDone)
            func skipped(_ reason: String) -> ClaimOutcome {
                outcome.nextRunAt = job.nextRun(due: due, now: startAt, anchor: state.anchor, runsDone: state.runsDone)
                outcome.record = JobRun(job: job.name, cid: ServiceInvoker.newCID(), scheduledAt: due, startedAt: startAt,
                                        finishedAt: startAt, durationMS: 0, status: .skipped, error: reason, server: server)
                return outcome
            }
            if let previous = state.runningCID {
                let mine = state.runningServer == server
                if state.runnerAlive && (!mine || busy.contains(previous)) {
                    let since = state.runningSince.map(JobDefinition.formatDate) ?? "?"
                    return skipped("the previous run (\(previous), started \(since) on \(state.runningServer ?? "?")) is still going")
                }
                outcome.interrupted = previous
            }
            if job.misfire == .skip && now - due > JobDefinition.misfireGrace {
                return skipped("missed its time by \((now - due) / 1000) s (the server was down or busy); misfire skip waits for the next time")
            }
            outcome.runsDone = state.runsDone + 1
            outcome.nextRunAt = job.nextRun(due: due, now: startAt, anchor: state.anchor, runsDone: outcome.runsDone)
            outcome.start = JobRun(job: job.name, cid: ServiceInvoker.newCID(), scheduledAt: due, startedAt: startAt,
                                   status: .running, server: server)
            return outcome
        }
    }

    private func started(_ outcome: ClaimOutcome, definitions: [String: JobDefinition]) {
        if let record = outcome.record {
            Counter(label: "esb_scheduler_runs_total", dimensions: [("job", record.job), ("status", record.status.rawValue)]).increment()
            logger.warning("scheduled run skipped", metadata: ["esb.job": "\(record.job)", "esb.error": "\(record.error ?? "")"])
        }
        guard let run = outcome.start, let job = definitions[run.job] else { return }
        launch(run, job: job)
    }

    /// Runs the job's service at the run's start time, bounded by `max_run_seconds`.
    private func launch(_ run: JobRun, job: JobDefinition) {
        running.withLock { tasks in
            tasks[run.cid] = Task(executorPreference: invoker.executor) { [self] in
                let wait = run.startedAt - JobDefinition.now()
                if wait > 0 { try? await Task.sleep(for: .milliseconds(wait)) }
                let started = JobDefinition.now()
                Timer(label: "esb_scheduler_start_delay_seconds", preferredDisplayUnit: .seconds)
                    .recordMilliseconds(max(0, started - run.scheduledAt))
                var ended = run
                (ended.status, ended.error) = await invoke(job, run: run)
                ended.finishedAt = JobDefinition.now()
                ended.durationMS = ended.finishedAt! - started
                await record(ended)
                running.withLock { _ = $0.removeValue(forKey: run.cid) }
            }
        }
    }

    private func invoke(_ job: JobDefinition, run: JobRun) async -> (JobRun.Status, String?) {
        let request = ServiceRequest(payload: Data(job.extra.utf8), channel: "scheduler", cid: run.cid,
                                     headers: ["x-esb-job": job.name, "x-esb-scheduled-at": JobDefinition.formatDate(run.scheduledAt)])
        let call = Task(executorPreference: invoker.executor) { [invoker] () -> (JobRun.Status, String?) in
            do {
                _ = try await invoker.invoke(job.service, request: request)
                return (.ok, nil)
            } catch {
                return (.failed, Self.bounded("\(error)"))
            }
        }
        guard job.maxRunSeconds > 0 else { return await withTaskCancellationHandler { await call.value } onCancel: { call.cancel() } }
        let outcome = FirstOutcome<(JobRun.Status, String?)>()
        let timer = Task {
            try? await Task.sleep(for: .seconds(job.maxRunSeconds))
            if !Task.isCancelled {
                outcome.offer((.timedOut, "ran longer than max_run_seconds = \(job.maxRunSeconds); cancelled"))
            }
        }
        let watcher = Task { outcome.offer(await call.value) }
        let result = await withTaskCancellationHandler { await outcome.value() } onCancel: { call.cancel() }
        timer.cancel()
        if result.0 == .timedOut {
            call.cancel()
            logger.error("scheduled run timed out and was cancelled", metadata: [
                "esb.job": "\(job.name)", "esb.cid": "\(run.cid)", "esb.service": "\(job.service)"])
        }
        _ = watcher
        return result
    }

    /// Stores a run's end, trying again for a while when the ODB does not answer (the run
    /// stays `running` meanwhile; if it never gets through, the next tick records it
    /// interrupted).
    private func record(_ run: JobRun) async {
        Counter(label: "esb_scheduler_runs_total", dimensions: [("job", run.job), ("status", run.status.rawValue)]).increment()
        if run.status != .ok {
            logger.error("scheduled run failed", metadata: [
                "esb.job": "\(run.job)", "esb.cid": "\(run.cid)", "esb.status": "\(run.status.rawValue)", "esb.error": "\(run.error ?? "")"])
        }
        for attempt in 1...5 {
            do {
                try await records.finish(run)
                doorbell.ring()
                return
            } catch {
                logger.error("cannot record a scheduled run's end", metadata: [
                    "esb.job": "\(run.job)", "esb.cid": "\(run.cid)", "esb.attempt": "\(attempt)", "esb.error": "\(error)"])
                try? await Task.sleep(for: .seconds(attempt))
            }
        }
    }

    /// At shutdown: runs in progress get `graceful_shutdown_seconds` to finish; those still
    /// going are cancelled and recorded `interrupted`.
    private func finishRunning() async {
        let deadline = ContinuousClock.now + .seconds(gracefulSeconds())
        while ContinuousClock.now < deadline, !running.withLock({ $0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let left = running.withLock { $0 }
        guard !left.isEmpty else { return }
        logger.warning("scheduled runs still going at shutdown are cancelled", metadata: ["esb.runs": "\(left.count)"])
        for task in left.values { task.cancel() }
        _ = try? await records.recover(now: JobDefinition.now())
    }

    static func bounded(_ text: String) -> String {
        text.utf8.count <= 4096 ? text : String(decoding: Array(text.utf8.prefix(4096)), as: UTF8.self) + "…"
    }

    // MARK: The API's view

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
        guard try await records.startManual(run) else {
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
        let fields = try await store.get(ObjectKinds.scheduler, name)
        let state = try await records.states()[name]
        let last = try await records.runs(job: name, limit: 1).first
        return JobListing(fields: fields, nextRunAt: state?.nextRunAt, lastRun: last, running: state?.runningCID != nil)
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

/// The first of several offered values, awaited once.
final class FirstOutcome<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiter: CheckedContinuation<Value, Never>?)>((nil, nil))

    func offer(_ value: Value) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, Never>? in
            guard state.value == nil else { return nil }
            state.value = value
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    func value() async -> Value {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Value? in
                if let value = state.value { return value }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
