@_spi(ESBHost) import ESBService
import ESBConcurrency
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// A run from its start to its stored end: the service call bounded by `max_run_seconds`, the
/// ends stored in batches, runs nothing here runs swept, and the runs still going at shutdown.
extension Scheduler {
    /// Whether a run of this server is going (or being started by "run now", or ended and
    /// not stored yet).
    func isBusy(_ cid: String) -> Bool {
        running.withLock { $0.tasks[cid] != nil || $0.reserved.contains(cid) } || ends.withLock { $0.cids.contains(cid) }
    }

    func takeEnds() -> [JobRun] {
        ends.withLock { state in
            defer { state.runs = [] }
            return state.runs
        }
    }

    func stored(_ runs: [JobRun]) {
        guard !runs.isEmpty else { return }
        ends.withLock { state in for run in runs { state.cids.remove(run.cid) } }
    }

    func giveBack(_ runs: [JobRun]) {
        guard !runs.isEmpty else { return }
        ends.withLock { $0.runs = runs + $0.runs }
    }

    /// Records this server's runs that the ODB has going but that nothing here runs (a
    /// claim whose commit the server never heard of, an end that could not be stored) as
    /// `interrupted`, freeing their jobs.
    func sweepStranded() async {
        guard let stored = try? await records.runningHere() else { return }
        let now = JobDefinition.now()
        let stranded = stored.filter { !isBusy($0.cid) }.map { run in
            JobRun(job: run.job, cid: run.cid, scheduledAt: now, startedAt: now, finishedAt: now, durationMS: nil,
                   status: .interrupted, error: "nothing on this server ran it (a claim or an end the ODB took but did not confirm)",
                   server: server)
        }
        guard !stranded.isEmpty, (try? await records.finish(stranded, release: true)) != nil else { return }
        metrics.interrupted.increment(by: stranded.count)
        logger.warning("scheduled runs nothing here ran recorded as interrupted", metadata: ["esb.runs": "\(stranded.count)"])
    }

    /// Stores the runs that ended (retrying while the ODB does not answer).
    func storeEnds() async {
        let runs = takeEnds()
        guard !runs.isEmpty else { return }
        await persist(runs[0].cid) { try await self.records.finish(runs, release: true) }
        stored(runs)
    }

    /// Runs the job's service at the run's start time, bounded by `max_run_seconds`: a run
    /// that takes longer is cancelled and recorded `timed_out` at once, and the job stays
    /// busy until the service has returned (runs never overlap, whatever the service does).
    func launch(_ run: JobRun, job: JobDefinition) {
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

    /// The call's outcome, or `timed_out` (the call cancelled) after `limit` seconds.
    static func outcome(of call: Task<(JobRun.Status, String?), Never>, limit: Int) async -> (JobRun.Status, String?) {
        do {
            return try await withDeadline(.seconds(limit)) { await call.value }
        } catch is DeadlineExceeded {
            call.cancel()
            return (.timedOut, "ran longer than max_run_seconds = \(limit); cancelled")
        } catch {
            // This run was cancelled (a shutdown), and the call with it: what it ended with.
            return await call.value
        }
    }

    /// Stores a run's end and counts it.
    func record(_ run: JobRun, release: Bool) async {
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
    func persist(_ cid: String, _ write: @escaping @Sendable () async throws -> Void) async {
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
    func finishRunning() async {
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
}
