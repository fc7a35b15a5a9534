@_spi(ESBHost) import ESBService
import ESBConcurrency
import ESBConfig
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs durable async work (``AsyncStore``): due attempts and callbacks, at most
/// `[async] max_concurrency` at a time. At start, steps a crash cut short are due again;
/// finished records older than `[async] retention_days` are pruned at start, on SIGHUP and
/// hourly. On graceful shutdown it claims nothing more; steps still running when the
/// server stops stay in the ODB and run again at the next start.
public final class AsyncScheduler: ServiceLifecycle.Service, Sendable, CustomStringConvertible {
    public var description: String { "AsyncScheduler" }
    private let store: AsyncStore
    private let invoker: ServiceInvoker
    private let logger: Logger
    private let settings: Mutex<ServerConfig.Async>
    private let running = Atomic<Int>(0)
    /// The cids of the steps this server's tasks run now.
    private let inFlight = Mutex<Set<String>>([])
    /// When a read of due work last failed (timed out, lost its connection): for a while,
    /// claims it may have committed anyway are looked for with every take-over.
    private let claimTimedOut = Mutex<ContinuousClock.Instant?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// Set by a reload: the loop prunes on its next turn.
    private let pruneRequested = Atomic<Bool>(false)
    private var metrics: AsyncMetrics { store.metrics }

    static let pruneInterval: Duration = .seconds(3600)
    static let gaugeInterval: Duration = .seconds(2)
    /// The longest sleep between looks at the ODB, in case a wake-up was missed.
    static let idleWait: Duration = .seconds(5)

    public init(store: AsyncStore, invoker: ServiceInvoker, settings: ServerConfig.Async, logger: Logger) {
        self.store = store
        self.invoker = invoker
        self.settings = Mutex(settings)
        self.logger = logger
    }

    /// Applies `[async]` from a reload: a new concurrency limit and retention, pruning at once.
    public func apply(_ settings: ServerConfig.Async) {
        self.settings.withLock { $0 = settings }
        pruneRequested.store(true, ordering: .relaxed)
        store.doorbell.ring()
    }

    public func run() async throws {
        do {
            let recovered = try await store.recover(now: AsyncRecord.now())
            if recovered.attempts + recovered.callbacks > 0 {
                logger.warning("async work cut short by the last stop runs again",
                               metadata: ["esb.attempts": "\(recovered.attempts)", "esb.callbacks": "\(recovered.callbacks)"])
            }
        } catch {
            logger.error("cannot resume async work: \(error)")
        }
        await prune()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                await loop(group: &group)
            }
        } onGracefulShutdown: { [self] in
            stopping.store(true, ordering: .relaxed)
            store.doorbell.ring()
        }
    }

    /// Runs one of the loop's own calls to the ODB (claims, take-over, pruning, gauges),
    /// which a graceful shutdown cancels: the shutdown waits for the steps that run, not for
    /// an ODB that does not answer. A claim cut short stays this server's until its next
    /// start, or until another server takes it over (at once when this server's stop was
    /// recorded, else past the lease).
    private func look<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await cancelWhenGracefulShutdown(body)
    }

    private func loop(group: inout DiscardingTaskGroup) async {
        var lastPrune = ContinuousClock.now
        var lastGauges = ContinuousClock.now - Self.gaugeInterval
        var lastTakeOver = ContinuousClock.now - store.lease
        while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
            if pruneRequested.exchange(false, ordering: .relaxed) {
                _ = try? await look { await self.prune() }
                lastPrune = .now
            }
            if ContinuousClock.now - lastTakeOver >= store.lease / 3 {
                _ = try? await look { await self.takeOver() }
                lastTakeOver = .now
            }
            let free = settings.withLock(\.maxConcurrency) - running.load(ordering: .relaxed)
            var wait = min(Self.idleWait, store.lease / 3)
            if free > 0 {
                do {
                    let claimed = try await look { try await self.store.claimDue(now: AsyncRecord.now(), limit: free) }
                    for record in claimed {
                        running.add(1, ordering: .relaxed)
                        inFlight.withLock { _ = $0.insert(record.cid) }
                        group.addTask { [self] in
                            await execute(record)
                            inFlight.withLock { _ = $0.remove(record.cid) }
                            running.subtract(1, ordering: .relaxed)
                            store.doorbell.ring()
                        }
                    }
                    if claimed.count == free { continue }  // more may be due: look again once a slot frees
                    if let next = try await look({ try await self.store.nextDue() }) {
                        wait = min(wait, .milliseconds(max(0, next - AsyncRecord.now())))
                    }
                } catch {
                    if stopping.load(ordering: .relaxed) || Task.isCancelled { break }
                    // Whatever failed, the claim may have committed: look for claims no task runs.
                    claimTimedOut.withLock { $0 = .now }
                    logger.error("cannot read due async work; trying again", metadata: ["esb.error": "\(error)"])
                    wait = .seconds(1)
                }
            }
            if ContinuousClock.now - lastGauges >= Self.gaugeInterval {
                _ = try? await look { await self.refreshGauges() }
                lastGauges = .now
            }
            if ContinuousClock.now - lastPrune >= Self.pruneInterval {
                _ = try? await look { await self.prune() }
                lastPrune = .now
            }
            if wait > .zero { await store.doorbell.wait(upTo: wait) }
        }
    }

    /// Runs one claimed step (an attempt, then the callback when it finished; or a callback).
    private func execute(_ claimed: AsyncRecord) async {
        var record = claimed
        if !record.isAtCallback {
            metrics.attempts.increment()
            let outcome: Result<Data, AttemptError>
            do {
                let response = try await invoker.invoke(record.target, request: ServiceRequest(
                    payload: record.payload, channel: "invoke-async", cid: record.cid))
                outcome = .success(response.payload)
            } catch {
                if Task.isCancelled { return await release(record) }
                outcome = .failure(AttemptError(error))
            }
            let now = AsyncRecord.now()
            record.recordAttempt(outcome, now: now)
            if record.isAtCallback {
                (record.status == .done ? metrics.done : metrics.failed).increment()
                // The finish and the hand-over of the callback are one commit, when the callback
                // service is here; else it waits, due, for a server that has it.
                if record.callbackStatus == .pending, store.runsHere(record.callback) { record.claim(now: now) }
            }
            guard await save(record) else { return }
            if record.status == .pending { store.doorbell.ring() }  // the retry may be due soon
        }
        if record.callbackStatus == .running { await deliverCallback(record) }
    }

    private func deliverCallback(_ claimed: AsyncRecord) async {
        guard let callback = claimed.callback else { return }
        var record = claimed
        metrics.callbacks.increment()
        do {
            _ = try await invoker.invoke(callback, request: ServiceRequest(
                payload: record.callbackPayload(), channel: "callback", cid: record.callbackID))
            record.recordCallback(error: nil, now: AsyncRecord.now())
        } catch let error as ServiceError where error.code == .invokeUnknownService || error.code == .invokeInactive {
            record.deferCallback(reason: "\(error)", now: AsyncRecord.now())
            logger.warning("async callback waits: its service is not available",
                           metadata: ["esb.cid": "\(record.cid)", "esb.callback": "\(callback)", "esb.error": "\(error)"])
        } catch {
            // The callback service ran and failed: that is its outcome, not a reason to call it twice.
            if Task.isCancelled { return }  // shutdown: it stays running, and is redelivered at the next start
            record.recordCallback(error: "\(error)", now: AsyncRecord.now())
        }
        _ = await save(record)
    }

    /// A step the shutdown interrupted goes back to pending.
    private func release(_ record: AsyncRecord) async {
        var record = record
        record.interrupt(now: AsyncRecord.now())
        _ = await save(record)
    }

    /// Stores the record, retrying while the ODB cannot be reached (a PostgreSQL restart) for
    /// up to ``saveAttempts`` tries; after that, or at shutdown, the step stays `running` in
    /// the ODB and is resumed at the next start (or taken over by another server).
    private func save(_ record: AsyncRecord) async -> Bool {
        var delay = Duration.milliseconds(200)
        for attempt in 1...Self.saveAttempts {
            do {
                try await store.update(record)
                return true
            } catch let lost as AsyncClaimLost {
                logger.warning("async work was taken over by another server while it ran here; this outcome is dropped",
                               metadata: ["esb.cid": "\(lost.cid)"])
                return false
            } catch {
                if attempt == Self.saveAttempts || stopping.load(ordering: .relaxed) || Task.isCancelled {
                    logger.critical("cannot record async progress; it resumes at the next start",
                                    metadata: ["esb.cid": "\(record.cid)", "esb.error": "\(error)"])
                    return false
                }
                if attempt == 1 {
                    logger.error("cannot record async progress; retrying", metadata: ["esb.cid": "\(record.cid)", "esb.error": "\(error)"])
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
        return false
    }

    /// How long after a `claimDue` timed out its late claims are looked for.
    static let strandedWatch: Duration = .seconds(300)

    /// How often a step's outcome is tried before it is left to the next start (about 2
    /// minutes when each try fails at once; longer when tries time out).
    static let saveAttempts = 30

    /// Takes over the work of servers whose lease ran out (a cluster on PostgreSQL).
    private func takeOver() async {
        if let timedOut = claimTimedOut.withLock({ $0 }), ContinuousClock.now - timedOut < Self.strandedWatch {
            do {
                let running = Array(inFlight.withLock { $0 })
                let released = try await store.releaseStranded(now: AsyncRecord.now(), running: running)
                if released.attempts + released.callbacks > 0 {
                    logger.warning("async work claimed by a read that timed out runs again",
                                   metadata: ["esb.attempts": "\(released.attempts)", "esb.callbacks": "\(released.callbacks)"])
                }
            } catch {
                guard !Task.isCancelled else { return }
                logger.error("cannot look for async work a timed-out read claimed", metadata: ["esb.error": "\(error)"])
            }
        }
        do {
            let taken = try await store.takeOver(now: AsyncRecord.now())
            if taken.attempts + taken.callbacks > 0 {
                logger.warning("took over async work of servers that stopped or went silent past [cluster] lease_seconds",
                               metadata: ["esb.attempts": "\(taken.attempts)", "esb.callbacks": "\(taken.callbacks)"])
            }
        } catch {
            guard !Task.isCancelled else { return }  // cancelled: the server stops
            logger.error("cannot look for async work to take over", metadata: ["esb.error": "\(error)"])
        }
    }

    private func prune() async {
        let days = settings.withLock(\.retentionDays)
        let cutoff = AsyncRecord.now() - Int64(days) * 86_400_000
        do {
            let pruned = try await store.prune(finishedBefore: cutoff)
            if pruned > 0 {
                logger.info("pruned finished async records", metadata: ["esb.records": "\(pruned)", "esb.retention_days": "\(days)"])
            }
        } catch {
            guard !Task.isCancelled else { return }
            logger.error("cannot prune finished async records: \(error)")
        }
    }

    private func refreshGauges() async {
        // Only what the gauges show: the finished records are most of the table.
        guard let counts = try? await store.counts([.pending, .running]) else { return }
        metrics.pending.record(counts[.pending] ?? 0)
        metrics.running.record(counts[.running] ?? 0)
    }
}

/// `esb_async_*`: accepted, attempts, finished, callbacks, and the ODB's pending and running.
struct AsyncMetrics: Sendable {
    let accepted = Counter(label: "esb_async_accepted_total")
    let attempts = Counter(label: "esb_async_attempts_total")
    let done = Counter(label: "esb_async_done_total")
    let failed = Counter(label: "esb_async_failed_total")
    let callbacks = Counter(label: "esb_async_callbacks_total")
    let pending = Gauge(label: "esb_async_pending")
    let running = Gauge(label: "esb_async_running")
}
