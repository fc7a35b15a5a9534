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
    /// Runs in progress on this server, by cid, and runs being started by "run now".
    private let running = Mutex<(tasks: [String: Task<Void, Never>], reserved: Set<String>)>(([:], []))
    private let reloads = SerialTasks<Int>()
    /// A failed reload is tried again (with backoff) until one succeeds.
    private let reloadRetry = Mutex<(pending: Bool, failures: Int)>((false, 0))
    /// On a shared ODB: the services deployed on the other live servers.
    private let elsewhere = Mutex<Set<String>>([])
    /// Set when shutdown cancels the runs still going: they are recorded `interrupted`.
    private let cancelledAtShutdown = Atomic<Bool>(false)
    private let metrics = SchedulerMetrics()
    /// When the graceful shutdown began: runs get `graceful_shutdown_seconds` from then.
    private let shutdownStarted = Mutex<ContinuousClock.Instant?>(nil)
    static let sweepInterval: Duration = .seconds(10)
    /// Runs that ended, stored with the next claim or within ``endsInterval``, whichever
    /// comes first (one commit for many); their cids count as busy until then.
    private let ends = Mutex<(runs: [JobRun], cids: Set<String>)>(([], []))
    static let endsInterval: Duration = .milliseconds(50)

    /// Runs kept per job.
    public static let keptRuns = 100
    /// The loop wakes this long before the next due run, and a claim takes the runs due up to
    /// 40 ms after that, in one transaction for all of them; each run starts at its time. At
    /// least 10 ms, and more when claims take longer (many jobs due at once): one and a half
    /// times the slowest recent claim.
    private let claimCost = Mutex<Double>(0)
    private var wakeEarly: Int64 { Int64(min(500, max(10, claimCost.withLock { $0 } * 1.5 + 5))) }
    private var lookahead: Int64 { wakeEarly + 40 }
    /// Set by a reload: the loop claims again at once (it may sleep through a short wait).
    private let changed = Atomic<Bool>(false)
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

    /// The scheduler's tables.
    public static let tables = ODBMigration(
        "v11-scheduler", sqlite: SQLiteSchedulerRecords.createTables, postgresql: PostgresSchedulerRecords.createTables)

    /// Loads the jobs now and again after every change to them.
    public func start() async {
        // Before the HTTP server answers: a "run now" cannot be taken for a run of the last life.
        do {
            let interrupted = try await records.recover(now: JobDefinition.now())
            if interrupted > 0 {
                Counter(label: "esb_scheduler_interrupted_total").increment(by: interrupted)
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

    private func load() async throws {
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
                    while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
                        try? await Task.sleep(for: Self.endsInterval)
                        await storeEnds()
                        if ContinuousClock.now - lastSweep >= Self.sweepInterval {
                            lastSweep = .now
                            await sweepStranded()
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
    private func loop() async {
        var lastPrune = ContinuousClock.now - Self.pruneInterval
        var lastTakeOver = ContinuousClock.now - lease
        var pending: [(run: JobRun, job: JobDefinition)] = []
        var claimAt: Int64 = 0
        while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
            launchDue(&pending)
            if changed.exchange(false, ordering: .relaxed) { claimAt = 0 }
            if JobDefinition.now() >= claimAt {
                if ContinuousClock.now - lastPrune >= Self.pruneInterval {
                    lastPrune = .now
                    _ = try? await cancelWhenGracefulShutdown { try await self.records.prune(keep: Self.keptRuns) }
                }
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
    private func launchDue(_ pending: inout [(run: JobRun, job: JobDefinition)]) {
        let now = JobDefinition.now()
        let due = pending.prefix { $0.run.startedAt <= now }
        guard !due.isEmpty else { return }
        for (run, job) in due { launch(run, job: job) }
        running.withLock { state in for (run, _) in due { state.reserved.remove(run.cid) } }
        pending.removeFirst(due.count)
    }

    private func takeOver() async {
        if let cut = try? await cancelWhenGracefulShutdown({ try await self.records.takeOver(now: JobDefinition.now(), leaseMS: self.lease.components.seconds * 1000) }), cut > 0 {
            Counter(label: "esb_scheduler_interrupted_total").increment(by: cut)
            logger.warning("scheduled runs of a server that stopped or went silent recorded as interrupted", metadata: ["esb.runs": "\(cut)"])
        }
        if let services = try? await cancelWhenGracefulShutdown({ try await self.records.servicesDeployedElsewhere() }) {
            elsewhere.withLock { $0 = services }
        }
    }

    /// Claims the runs due soon (and stores the runs that ended) in one transaction, adds the
    /// runs to start to `pending`, and returns when to claim next.
    private func claim(into pending: inout [(run: JobRun, job: JobDefinition)]) async -> Int64 {
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
            // Due but not taken: a job whose change this server has not loaded yet.
            if next <= now + lookahead && outcomes.isEmpty { return JobDefinition.now() + 100 }
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
    private func localJobs() -> (mine: [String]?, orphans: [String]) {
        guard let deployedServices else { return (nil, []) }
        let services = deployedServices(), others = elsewhere.withLock { $0 }
        return definitions.withLock { definitions in
            (definitions.values.filter { services.contains($0.service) }.map(\.name),
             definitions.values.filter { !services.contains($0.service) && !others.contains($0.service) }.map(\.name))
        }
    }

    /// Whether a run of this server is going (or being started by "run now", or ended and
    /// not stored yet).
    private func isBusy(_ cid: String) -> Bool {
        running.withLock { $0.tasks[cid] != nil || $0.reserved.contains(cid) } || ends.withLock { $0.cids.contains(cid) }
    }

    private func takeEnds() -> [JobRun] {
        ends.withLock { state in
            defer { state.runs = [] }
            return state.runs
        }
    }

    private func stored(_ runs: [JobRun]) {
        guard !runs.isEmpty else { return }
        ends.withLock { state in for run in runs { state.cids.remove(run.cid) } }
    }

    private func giveBack(_ runs: [JobRun]) {
        guard !runs.isEmpty else { return }
        ends.withLock { $0.runs = runs + $0.runs }
    }

    /// Records this server's runs that are stored `running` but that nothing here runs (a
    /// claim whose commit the server never heard of, an end that could not be stored) as
    /// `interrupted`, freeing their jobs.
    private func sweepStranded() async {
        guard let stored = try? await records.runningHere() else { return }
        let now = JobDefinition.now()
        let stranded = stored.filter { !isBusy($0.cid) }.map { run in
            JobRun(job: run.job, cid: run.cid, scheduledAt: now, startedAt: now, finishedAt: now, durationMS: nil,
                   status: .interrupted, error: "nothing on this server ran it (a claim or an end the ODB took but did not confirm)",
                   server: server)
        }
        guard !stranded.isEmpty, (try? await records.finish(stranded, release: true)) != nil else { return }
        Counter(label: "esb_scheduler_interrupted_total").increment(by: stranded.count)
        logger.warning("scheduled runs nothing here ran recorded as interrupted", metadata: ["esb.runs": "\(stranded.count)"])
    }

    /// Stores the runs that ended (retrying while the ODB does not answer).
    private func storeEnds() async {
        let runs = takeEnds()
        guard !runs.isEmpty else { return }
        await persist(runs[0].cid) { try await self.records.finish(runs, release: true) }
        stored(runs)
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

    /// Runs the job's service at the run's start time, bounded by `max_run_seconds`: a run
    /// that takes longer is cancelled and recorded `timed_out` at once, and the job stays
    /// busy until the service has returned (runs never overlap, whatever the service does).
    private func launch(_ run: JobRun, job: JobDefinition) {
        running.withLock { state in
            state.tasks[run.cid] = Task(executorPreference: invoker.executor) { [self] in
                let started = JobDefinition.now()
                metrics.startDelay.recordMilliseconds(max(0, started - run.scheduledAt))
                let request = ServiceRequest(payload: Data(job.extra.utf8), channel: "scheduler", cid: run.cid, headers: [
                    "x-esb-job": job.name, "x-esb-scheduled-at": JobDefinition.formatDate(run.scheduledAt)])
                @Sendable func invoke() async -> (JobRun.Status, String?) {
                    do {
                        _ = try await invoker.invoke(job.service, request: request)
                        return (.ok, nil)
                    } catch {
                        return (.failed, Self.bounded("\(error)"))
                    }
                }
                var ended = run
                var call: Task<(JobRun.Status, String?), Never>?
                if job.maxRunSeconds == 0 {
                    (ended.status, ended.error) = await invoke()
                } else {
                    let limited = Task(executorPreference: invoker.executor) { await invoke() }
                    call = limited
                    (ended.status, ended.error) = await withTaskCancellationHandler {
                        await Self.outcome(of: limited, limit: job.maxRunSeconds)
                    } onCancel: {
                        limited.cancel()
                    }
                }
                if cancelledAtShutdown.load(ordering: .relaxed) && ended.status != .ok {
                    (ended.status, ended.error) = (.interrupted, "the server stopped before the run ended (graceful_shutdown_seconds passed)")
                }
                ended.finishedAt = JobDefinition.now()
                ended.durationMS = ended.finishedAt! - started
                if ended.status == .timedOut {
                    logger.error("scheduled run timed out and was cancelled; the job waits for the service to return", metadata: [
                        "esb.job": "\(job.name)", "esb.cid": "\(run.cid)", "esb.service": "\(job.service)"])
                    await record(ended, release: false)
                    _ = await call?.value
                    await persist(run.cid) { try await self.records.release(job: run.job, cid: run.cid) }
                } else {
                    await record(ended, release: true)
                }
                running.withLock { _ = $0.tasks.removeValue(forKey: run.cid) }
            }
        }
    }

    /// The call's outcome, or `timed_out` (the call cancelled) after `limit` seconds (0: none).
    static func outcome(of call: Task<(JobRun.Status, String?), Never>, limit: Int) async -> (JobRun.Status, String?) {
        guard limit > 0 else { return await call.value }
        let first = FirstOutcome<(JobRun.Status, String?)>()
        let timer = Task {
            try? await Task.sleep(for: .seconds(limit))
            if !Task.isCancelled {
                call.cancel()
                first.offer((.timedOut, "ran longer than max_run_seconds = \(limit); cancelled"))
            }
        }
        Task { first.offer(await call.value) }
        let result = await first.value()
        timer.cancel()
        return result
    }

    /// Stores a run's end and counts it.
    private func record(_ run: JobRun, release: Bool) async {
        metrics.runs(run.job, run.status).increment()
        if run.status != .ok {
            metrics.failures(run.job).increment()
            logger.error("scheduled run failed", metadata: [
                "esb.job": "\(run.job)", "esb.cid": "\(run.cid)", "esb.status": "\(run.status.rawValue)", "esb.error": "\(run.error ?? "")"])
        }
        if release {
            // Stored with the next claim or within 50 ms; the run counts as busy until then.
            ends.withLock { state in
                state.runs.append(run)
                state.cids.insert(run.cid)
            }
        } else {
            await persist(run.cid) { try await self.records.finish([run], release: false) }
        }
    }

    /// Runs an ODB write until it succeeds, with backoff (the job stays busy meanwhile); at
    /// shutdown it gives up after a few tries, and the next start records the run interrupted.
    private func persist(_ cid: String, _ write: @escaping @Sendable () async throws -> Void) async {
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await write()
                return
            } catch {
                logger.error("cannot record a scheduled run in the ODB; trying again", metadata: [
                    "esb.cid": "\(cid)", "esb.attempt": "\(attempt)", "esb.error": "\(error)"])
                if stopping.load(ordering: .relaxed) || Task.isCancelled {
                    if attempt >= 3 || Task.isCancelled { return }
                    try? await Task.sleep(for: .milliseconds(100))
                } else {
                    try? await Task.sleep(for: .seconds(min(30, attempt)))
                }
            }
        }
    }

    /// At shutdown: runs in progress get `graceful_shutdown_seconds` to finish; those still
    /// going are cancelled and recorded `interrupted`.
    private func finishRunning() async {
        let deadline = (shutdownStarted.withLock { $0 } ?? .now) + .seconds(gracefulSeconds())
        while ContinuousClock.now < deadline, !Task.isCancelled, !running.withLock({ $0.tasks.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let left = running.withLock { $0.tasks }
        if !left.isEmpty {
            logger.warning("scheduled runs still going at shutdown are cancelled", metadata: ["esb.runs": "\(left.count)"])
            cancelledAtShutdown.store(true, ordering: .relaxed)
            for task in left.values { task.cancel() }
            // Those that end now record themselves; the next start records what is left.
            let recorded = ContinuousClock.now + .seconds(2)
            while ContinuousClock.now < recorded, !Task.isCancelled, !running.withLock({ $0.tasks.isEmpty }) {
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        // The ends first: a run that ended is recorded as it ended, not as cut short.
        await storeEnds()
        if !running.withLock({ $0.tasks.isEmpty }) { _ = try? await records.recover(now: JobDefinition.now()) }
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

/// The scheduler's metrics, each made once (a lookup in the metrics backend per run would
/// cost more than the run).
final class SchedulerMetrics: Sendable {
    let startDelay = Timer(label: "esb_scheduler_start_delay_seconds", preferredDisplayUnit: .seconds)
    private let counters = Mutex<[String: Counter]>([:])

    func runs(_ job: String, _ status: JobRun.Status) -> Counter {
        counter("runs\u{0}\(job)\u{0}\(status.rawValue)") {
            Counter(label: "esb_scheduler_runs_total", dimensions: [("job", job), ("status", status.rawValue)])
        }
    }

    func failures(_ job: String) -> Counter {
        counter("failures\u{0}\(job)") { Counter(label: "esb_scheduler_failures_total", dimensions: [("job", job)]) }
    }

    private func counter(_ key: String, _ make: () -> Counter) -> Counter {
        counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = make()
            counters[key] = counter
            return counter
        }
    }
}
