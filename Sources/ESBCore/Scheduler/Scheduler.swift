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

    let store: ObjectStore
    let records: any SchedulerRecords
    let invoker: ServiceInvoker
    let server: String
    let lease: Duration
    /// On a shared ODB: the services deployed on this server (it runs their jobs); nil on SQLite.
    let deployedServices: (@Sendable () -> Set<String>)?
    let gracefulSeconds: @Sendable () -> Int
    let logger: Logger
    let definitions = Mutex<[String: JobDefinition]>([:])
    let doorbell = Doorbell()
    let stopping = Atomic<Bool>(false)
    /// Runs in progress on this server, by cid, and runs being started by "run now".
    let running = Mutex<(tasks: [String: Task<Void, Never>], reserved: Set<String>)>(([:], []))
    let reloads = SerialTasks<Int>()
    /// A failed reload is tried again (with backoff) until one succeeds.
    let reloadRetry = Mutex<(pending: Bool, failures: Int)>((false, 0))
    /// On a shared ODB: the services deployed on the other live servers.
    let elsewhere = Mutex<Set<String>>([])
    /// Set when shutdown cancels the runs still going: they are recorded `interrupted`.
    let cancelledAtShutdown = Atomic<Bool>(false)
    let metrics = SchedulerMetrics()
    /// When the graceful shutdown began: runs get `graceful_shutdown_seconds` from then.
    let shutdownStarted = Mutex<ContinuousClock.Instant?>(nil)
    static let sweepInterval: Duration = .seconds(10)
    /// Runs that ended, stored with the next claim or within ``endsInterval``, whichever
    /// comes first (one commit for many); their cids count as busy until then.
    let ends = Mutex<(runs: [JobRun], cids: Set<String>)>(([], []))
    static let endsInterval: Duration = .milliseconds(50)

    /// Runs kept per job.
    public static let keptRuns = 100
    /// The loop wakes this long before the next due run, and a claim takes the runs due up to
    /// 40 ms after that, in one transaction for all of them; each run starts at its time. At
    /// least 10 ms, and more when claims take longer (many jobs due at once): one and a half
    /// times the slowest recent claim.
    let claimCost = Mutex<Double>(0)
    var wakeEarly: Int64 { Int64(min(500, max(10, claimCost.withLock { $0 } * 1.5 + 5))) }
    var lookahead: Int64 { wakeEarly + 40 }
    /// Set by a reload: the loop claims again at once (it may sleep through a short wait).
    let changed = Atomic<Bool>(false)
    /// How overdue a job whose service no live server has deployed must be before a server
    /// takes it anyway, to record the failed run.
    static let foreignAfter: Int64 = 3000
    static let pruneInterval: Duration = .seconds(60)

    public init(store: ObjectStore, odb: ODB, invoker: ServiceInvoker, server: String, lease: Duration,
                deployedServices: (@Sendable () -> Set<String>)?, gracefulSeconds: @escaping @Sendable () -> Int,
                logger: Logger) {
        self.store = store
        records = Self.records(odb, server: server, leaseMS: lease.components.seconds * 1000)
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
    /// On SQLite, a run is written once, when it ended (``SQLiteSchedulerRecords``).
    public static let runsWrittenOnce = ODBMigration("v12-scheduler-runs-once", sqlite: SQLiteSchedulerRecords.storeRunsOnce, postgresql: nil)

    /// Loads the jobs now and again after every change to them.
    public func start() async {
        // Before the HTTP server answers: a "run now" cannot be taken for a run of the last life.
        do {
            let interrupted = try await records.recover(now: JobDefinition.now())
            if interrupted > 0 {
                metrics.interrupted.increment(by: interrupted)
                logger.warning("scheduled runs cut short by the last stop recorded as interrupted", metadata: ["esb.runs": "\(interrupted)"])
            }
        } catch {
            logger.error("cannot record interrupted scheduled runs: \(error)")
        }
        await reload()
        store.observe([ObjectKinds.scheduler]) { [weak self] in await self?.reload() }
    }

    /// Reads the jobs and brings their schedule state in line: new and changed jobs get their
    /// first run time, paused and resumed ones lose or get their next one, deleted ones lose
    /// their state and runs. A reload that fails is tried again until one succeeds.
    public func reload() async {
        await reloads.run(0, cancellable: true) { [self] in
            do {
                try await load()
                reloadRetry.withLock { $0.failures = 0 }
            } catch {
                guard !Task.isCancelled else { return }
                let failures = reloadRetry.withLock { state -> Int? in
                    state.failures += 1
                    guard !state.pending else { return nil }
                    state.pending = true
                    return state.failures
                }
                logger.error("cannot load scheduled jobs; keeping the current ones and trying again", metadata: ["esb.error": "\(error)"])
                if let failures {
                    Task { [weak self] in
                        try? await Task.sleep(for: .seconds(min(30, 1 << min(failures - 1, 5))))
                        self?.reloadRetry.withLock { $0.pending = false }
                        await self?.reload()
                    }
                }
            }
            changed.store(true, ordering: .relaxed)
            doorbell.ring()
        }
    }

    func load() async throws {
        var loaded: [String: (job: JobDefinition, body: String)] = [:]
        for (fields, body) in try await store.listStored(ObjectKinds.scheduler) {
            do throws(JobDefinition.Problem) {
                let job = try JobDefinition(fields)
                loaded[job.name] = (job, body)
            } catch {
                logger.error("scheduled job cannot run", metadata: [
                    "esb.job": "\(fields["name"]?.string ?? "?")", "esb.error": "\(error.field) \(error.reason)"])
            }
        }
        let states = try await records.states()
        let now = JobDefinition.now()
        var changes: [JobSync] = []
        for (job, body) in loaded.values {
            if let state = states[job.name], state.scheduleKey == job.scheduleKey {
                if state.active == job.isActive {
                    // Active, not running, no next run, yet one is due by its schedule: left so by
                    // a claim that raced a pause and a resume. It gets its next run back.
                    if job.isActive, state.nextRunAt == nil, state.runningCID == nil,
                       let next = job.firstRun(now: now, anchor: state.anchor, runsDone: state.runsDone) {
                        changes.append(JobSync(change: .revive, state: JobState(
                            job: job.name, scheduleKey: job.scheduleKey, active: true, anchor: state.anchor, nextRunAt: next,
                            runsDone: state.runsDone), body: body))
                    }
                    continue
                }
                let next = job.firstRun(now: now, anchor: state.anchor, runsDone: state.runsDone)
                changes.append(JobSync(change: .toggle, state: JobState(
                    job: job.name, scheduleKey: job.scheduleKey, active: job.isActive, anchor: state.anchor, nextRunAt: next,
                    runsDone: state.runsDone), body: body))
            } else {
                let first = job.firstRun(now: now, anchor: now)
                if case .oneTime = job.schedule, first == nil, job.isActive {
                    logger.warning("one-time job's start_date is in the past: it does not run (POST /esb/api/scheduler/NAME/execute runs it now)",
                                   metadata: ["esb.job": "\(job.name)"])
                }
                changes.append(JobSync(change: .reset, state: JobState(
                    job: job.name, scheduleKey: job.scheduleKey, active: job.isActive, anchor: now, nextRunAt: first, runsDone: 0),
                    body: body))
            }
        }
        try await records.sync(changes)
        definitions.withLock { $0 = loaded.mapValues(\.job) }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { [self] in
                    var lastSweep = ContinuousClock.now
                    var lastPrune = ContinuousClock.now - Self.pruneInterval
                    while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
                        try? await Task.sleep(for: Self.endsInterval)
                        await storeEnds()
                        if ContinuousClock.now - lastSweep >= Self.sweepInterval {
                            lastSweep = .now
                            await sweepStranded()
                        }
                        // Here, not in the loop: runs start on time while old ones are deleted.
                        if ContinuousClock.now - lastPrune >= Self.pruneInterval {
                            lastPrune = .now
                            _ = try? await cancelWhenGracefulShutdown { try await self.records.prune(keep: Self.keptRuns) }
                        }
                    }
                }
                await loop()
            }
        } onGracefulShutdown: { [self] in
            shutdownStarted.withLock { $0 = .now }
            stopping.store(true, ordering: .relaxed)
            doorbell.ring()
        }
        await finishRunning()
        await storeEnds()
    }

    /// Claims due runs ahead of time and starts each when due. Runs are started by the loop
    /// in 5 ms steps (all those due by then at once), not each on its own timer: at a thousand
    /// runs a second, wake-ups are what costs.
    func loop() async {
        var lastTakeOver = ContinuousClock.now - lease
        var pending: [(run: JobRun, job: JobDefinition)] = []
        var claimAt: Int64 = 0
        while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
            launchDue(&pending)
            if changed.exchange(false, ordering: .relaxed) { claimAt = 0 }
            if JobDefinition.now() >= claimAt {
                if deployedServices != nil, ContinuousClock.now - lastTakeOver >= lease / 3 {
                    lastTakeOver = .now
                    await takeOver()
                }
                claimAt = await claim(into: &pending)
                launchDue(&pending)
            }
            let now = JobDefinition.now()
            var wakeAt = claimAt
            if let first = pending.first { wakeAt = min(wakeAt, ZonedCron.ceilDiv(first.run.startedAt, Self.launchStep) * Self.launchStep) }
            if wakeAt > now + 100 {
                // A long wait ends early at a change (a job edited, a shutdown).
                await doorbell.wait(upTo: .milliseconds(wakeAt - now))
            } else if wakeAt > now {
                // A short one is a plain sleep (no timer task beside it): a change waits for its end.
                try? await Task.sleep(for: .milliseconds(wakeAt - now))
            }
        }
        // Claimed but not started: recorded as cut short by the stop (misfire decides what comes next).
        let end = JobDefinition.now()
        for (run, _) in pending {
            var cut = run
            (cut.status, cut.error, cut.finishedAt, cut.durationMS) = (.interrupted, "the server stopped before the run started", end, 0)
            await record(cut, release: true)
            running.withLock { _ = $0.reserved.remove(run.cid) }
        }
    }

    /// How finely the loop starts runs, in ms: a run starts at most this much after its time.
    static let launchStep: Int64 = 5

    /// Starts the pending runs that are due (they are sorted by start time).
    func launchDue(_ pending: inout [(run: JobRun, job: JobDefinition)]) {
        let now = JobDefinition.now()
        let due = pending.prefix { $0.run.startedAt <= now }
        guard !due.isEmpty else { return }
        for (run, job) in due { launch(run, job: job) }
        running.withLock { state in for (run, _) in due { state.reserved.remove(run.cid) } }
        pending.removeFirst(due.count)
    }

    func takeOver() async {
        if let cut = try? await cancelWhenGracefulShutdown({ try await self.records.takeOver(now: JobDefinition.now(), leaseMS: self.lease.components.seconds * 1000) }), cut > 0 {
            metrics.interrupted.increment(by: cut)
            logger.warning("scheduled runs of a server that stopped or went silent recorded as interrupted", metadata: ["esb.runs": "\(cut)"])
        }
        if let services = try? await cancelWhenGracefulShutdown({ try await self.records.servicesDeployedElsewhere() }) {
            elsewhere.withLock { $0 = services }
        }
    }

    /// Claims the runs due soon (and stores the runs that ended) in one transaction, adds the
    /// runs to start to `pending`, and returns when to claim next.
    func claim(into pending: inout [(run: JobRun, job: JobDefinition)]) async -> Int64 {
        let idle: Int64 = deployedServices == nil ? 5000 : 1000
        let (jobs, orphans) = localJobs()
        let now = JobDefinition.now()
        let snapshot = definitions.withLock { $0 }
        let server = server, lookahead = lookahead
        let claimStarted = ContinuousClock.now
        let ended = takeEnds()
        do {
            let reserved = Mutex<[String]>([])
            let outcomes: [ClaimOutcome]
            do {
                outcomes = try await cancelWhenGracefulShutdown {
                    try await self.records.claim(now: now + lookahead, jobs: jobs, orphans: orphans,
                                                 foreignAfter: Self.foreignAfter + lookahead, limit: 1000, ends: ended) { states in
                        // Decided and reserved inside the claim's transaction: a "run now" on
                        // the same job sees the claimed runs busy, and the claim sees its run.
                        let outcomes = Self.plan(states, definitions: snapshot, now: now, server: server, busy: { self.isBusy($0) })
                        let starting = outcomes.compactMap { $0.start?.cid }
                        self.running.withLock { state in state.reserved.formUnion(starting) }
                        reserved.withLock { $0 = starting }
                        return outcomes
                    }
                }
            } catch {
                let starting = reserved.withLock { $0 }
                running.withLock { state in state.reserved.subtract(starting) }
                throw error
            }
            stored(ended)
            let took = ContinuousClock.now - claimStarted
            claimCost.withLock { $0 = max(Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15, $0 * 0.95) }
            var starting: [(run: JobRun, job: JobDefinition)] = []
            for outcome in outcomes {
                if let record = outcome.record {
                    metrics.runs(record.job, record.status).increment()
                    logger.warning("scheduled run skipped", metadata: ["esb.job": "\(record.job)", "esb.error": "\(record.error ?? "")"])
                }
                if let run = outcome.start, let job = snapshot[run.job] { starting.append((run, job)) }
            }
            // Reserved (busy) from the claim until started.
            pending.append(contentsOf: starting)
            pending.sort { $0.run.startedAt < $1.run.startedAt }
            if outcomes.count == 1000 { return now }
            guard let next = try await cancelWhenGracefulShutdown({ try await self.records.nextDue(jobs: jobs) }) else { return now + idle }
            // Due but not taken: a job whose change this server has not loaded yet. Claims go on
            // every 20 ms (the others' runs stay on time) until the reload settles it.
            if next <= now + lookahead { return JobDefinition.now() + 20 }
            return min(now + idle, next - wakeEarly)
        } catch {
            giveBack(ended)
            if !stopping.load(ordering: .relaxed) && !Task.isCancelled {
                logger.error("cannot read due scheduled jobs; trying again", metadata: ["esb.error": "\(error)"])
            }
            return JobDefinition.now() + 1000
        }
    }

    /// The jobs this server runs when due (nil: all, on SQLite), and on a shared ODB the jobs
    /// whose service no live server has deployed, which it takes once they are overdue.
    func localJobs() -> (mine: [String]?, orphans: [String]) {
        guard let deployedServices else { return (nil, []) }
        let services = deployedServices(), others = elsewhere.withLock { $0 }
        return definitions.withLock { definitions in
            (definitions.values.filter { services.contains($0.service) }.map(\.name),
             definitions.values.filter { !services.contains($0.service) && !others.contains($0.service) }.map(\.name))
        }
    }

    /// What to do with due jobs: start a run, or record it skipped (the previous run still
    /// going, or missed with `misfire: skip`), and when the job runs next. A job whose
    /// definition this server has not loaded yet is left alone.
    static func plan(_ states: [JobState], definitions: [String: JobDefinition], now: Int64, server: String,
                     busy: (String) -> Bool) -> [ClaimOutcome] {
        states.compactMap { state in
            // A definition this server has not loaded yet (another schedule, paused or resumed
            // meanwhile) is left to the next reload.
            guard let job = definitions[state.job], job.scheduleKey == state.scheduleKey, job.isActive == state.active,
                  let due = state.nextRunAt else { return nil }
            let startAt = max(now, due)
            var outcome = ClaimOutcome(job: state.job, nextRunAt: nil, runsDone: state.runsDone)
            func skipped(_ reason: String) -> ClaimOutcome {
                outcome.nextRunAt = job.nextRun(due: due, now: startAt, anchor: state.anchor, runsDone: state.runsDone)
                outcome.record = JobRun(job: job.name, cid: ServiceInvoker.newCID(), scheduledAt: due, startedAt: startAt,
                                        finishedAt: startAt, durationMS: 0, status: .skipped, error: reason, server: server)
                return outcome
            }
            if let previous = state.runningCID {
                // This server's own run is going while a task of it runs, whatever its heartbeat
                // says; another server's while that server is alive.
                let going = state.runningServer == server ? busy(previous) : state.runnerAlive
                if going {
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
}
