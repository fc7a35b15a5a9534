@_spi(ESBHost) import ESBService
import ESBHotDeploy
import ESBStore
import Foundation
import Logging
import Metrics
import Synchronization

/// Runs services: a fresh instance per call, on the service executor, with a context whose
/// host side is this invoker. Counts calls, errors and durations per service.
public final class ServiceInvoker: Sendable {
    public let registry: ServiceRegistry
    /// Where services run (and the HTTP server's request tasks).
    public let executor: ServiceExecutor
    let outgoing: OutgoingConnections
    /// Durable async invocations; `nil` where there is no ODB.
    let async: AsyncStore?
    /// Which units have a call in flight, for crash accounting; `nil` in tests without a work directory.
    let ledger: InFlightLedger?
    private let logger: Logger

    public init(registry: ServiceRegistry, executor: ServiceExecutor, outgoing: OutgoingConnections = .init(),
                async: AsyncStore? = nil, ledger: InFlightLedger? = nil, logger: Logger) {
        self.ledger = ledger
        self.registry = registry
        self.executor = executor
        self.outgoing = outgoing
        self.async = async
        self.logger = logger
        registry.replace(unit: ServiceRegistry.builtinUnit, with: BuiltinServices.all)
    }

    private struct ServiceMetrics: Sendable {
        var invocations: Counter
        var errors: Counter
        var duration: Timer
    }
    /// Metric handles per service, made once: creating them per call costs a factory lookup.
    private let metricsCache = Mutex<[String: ServiceMetrics]>([:])

    private func metrics(for name: String) -> ServiceMetrics {
        metricsCache.withLock { cache in
            if let known = cache[name] { return known }
            let dimensions = [("service", name)]
            let created = ServiceMetrics(
                invocations: Counter(label: "esb_service_invocations_total", dimensions: dimensions),
                errors: Counter(label: "esb_service_errors_total", dimensions: dimensions),
                duration: Timer(label: "esb_service_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds))
            cache[name] = created
            return created
        }
    }

    /// A new correlation id: 24 hex digits, unique and unpredictable-looking but not secret.
    ///
    /// A random 32-bit prefix per process, then a counter scrambled by a bijection (the
    /// splitmix64 finalizer over the counter plus a random key): distinct within a process by
    /// construction, and across processes by the random prefix and key. One atomic add
    /// instead of three `getrandom` calls per request.
    public static func newCID() -> String {
        let number = CIDSource.counter.add(1, ordering: .relaxed).newValue
        var mixed = number &+ CIDSource.key
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58476d1ce4e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d049bb133111eb
        mixed ^= mixed >> 31
        return String(unsafeUninitializedCapacity: 24) { buffer in
            let digits: StaticString = "0123456789abcdef"
            var prefix = CIDSource.prefix
            for index in (0..<8).reversed() {
                buffer[index] = digits.utf8Start[Int(prefix & 0xF)]
                prefix >>= 4
            }
            for index in (8..<24).reversed() {
                buffer[index] = digits.utf8Start[Int(mixed & 0xF)]
                mixed >>= 4
            }
            return 24
        }
    }

    /// Invokes `name` with `request`; `caller` is the invoking service, if any.
    /// - Throws: ``ServiceError`` for unknown services and self-invocation, or what the service threw.
    public func invoke(_ name: String, request: ServiceRequest, caller: String? = nil) async throws -> ServiceResponse {
        if let caller, caller == name {
            throw ServiceError(.invokeSelfInvocation, "service '\(name)' may not invoke itself")
        }
        guard let entry = registry.lookup(name) else {
            try checkInvocable(name)
            throw ServiceError(.invokeUnknownService, "no service named '\(name)' is deployed")
        }
        let cid = request.cid
        let serviceLogger = logger
        let context = ServiceContext(
            cid: cid, serviceName: name,
            logger: ServiceLogger { level, message in
                serviceLogger.log(level: Logger.Level(level), "\(message)",
                                  metadata: ["esb.service": "\(name)", "esb.cid": "\(cid)"])
            },
            host: InvocationHost(invoker: self))
        let metrics = self.metrics(for: name)
        let start = ContinuousClock.now
        do {
            let response = try await withTaskExecutorPreference(executor) {
                guard let ledger else { return try await entry.type.init().handle(request, context: context) }
                return try await ledger.tracking(entry.unit) { try await entry.type.init().handle(request, context: context) }
            }
            metrics.invocations.increment()
            metrics.duration.record(duration: ContinuousClock.now - start)
            return response
        } catch {
            metrics.invocations.increment()
            metrics.errors.increment()
            metrics.duration.record(duration: ContinuousClock.now - start)
            logger.error("service failed", metadata: ["esb.service": "\(name)", "esb.cid": "\(cid)",
                                                      "esb.channel": "\(request.channel)", "esb.error": "\(error)"])
            throw error
        }
    }

    /// Stores an invocation of `name` durably and returns its cid; the scheduler runs it in
    /// the background and then invokes `callback`, if given, with the outcome.
    /// - Throws: ``ServiceError`` when a service is not deployed or async work is not available
    ///   (`odb.unavailable` while the ODB cannot be reached), or the ODB's error when the record
    ///   cannot be stored (then nothing was accepted).
    public func invokeAsync(_ name: String, payload: Data, callback: String?, source: String? = nil,
                            origCID: String? = nil) async throws -> String {
        let record = AsyncRecord(kind: .invokeAsync, target: name, payload: payload, source: source, origCID: origCID,
                                 callback: callback, now: AsyncRecord.now())
        try await accept(record)
        return record.cid
    }

    /// Stores a new async record after checking that its target and callback are deployed.
    func accept(_ record: AsyncRecord) async throws {
        guard let async else {
            throw ServiceError(.notConfigured, "async invocations need the ODB; this invoker has none")
        }
        try checkInvocable(record.target)
        if let callback = record.callback { try checkInvocable(callback, role: "callback service") }
        do {
            try await async.accept(record)
        } catch {
            guard let unreachable = StoreError.unreachable(error) else { throw error }
            // The code a service can match; the engine's detail stays in the server's log.
            logger.warning("async invocation not accepted: the ODB cannot be reached",
                           metadata: ["esb.cid": "\(record.cid)", "esb.error": "\(unreachable.message)"])
            throw ServiceError(.odbUnavailable, unreachable.outcomeUnknown
                ? "the ODB did not answer in time: invocation \(record.cid) may have been stored (it then runs); try again shortly"
                : "the ODB cannot be reached now, so the invocation was not accepted; try again shortly")
        }
    }

    /// Throws the error `invoke` would for a service that is not deployed or inactive.
    func checkInvocable(_ name: String, role: String = "service") throws {
        guard registry.lookup(name) == nil else { return }
        if let reason = registry.inactiveReason(name) {
            throw ServiceError(.invokeInactive, "\(role) '\(name)' is inactive: \(reason)")
        }
        throw ServiceError(.invokeUnknownService, "no \(role) named '\(name)' is deployed")
    }
}

/// What ``ServiceInvoker/newCID()`` draws from: random once per process.
enum CIDSource {
    static let prefix = UInt32.random(in: .min ... .max)
    static let key = UInt64.random(in: .min ... .max)
    static let counter = Atomic<UInt64>(0)
}

/// The server side of every ``ServiceContext``: an internal type, as ``ServiceHost`` is SPI.
struct InvocationHost: ServiceHost {
    let invoker: ServiceInvoker

    func invoke(_ name: String, payload: Data, from context: ServiceContext) async throws -> ServiceResponse {
        try await invoker.invoke(name, request: ServiceRequest(payload: payload, channel: "invoke", cid: ServiceInvoker.newCID()),
                                 caller: context.serviceName)
    }

    func invokeAsync(_ name: String, payload: Data, callback: String?, from context: ServiceContext) async throws -> String {
        try await invoker.invokeAsync(name, payload: payload, callback: callback, source: context.serviceName,
                                      origCID: context.cid)
    }

    func amqpSend(_ message: Data, outconn: String, exchange: String, routingKey: String, properties: AMQPProperties,
                  headers: [String: AMQPHeaderValue], from context: ServiceContext) async throws {
        guard let amqp = invoker.outgoing.amqp else {
            throw ServiceError(.amqpUnknownOutconn, "no outgoing AMQP connection named '\(outconn)'")
        }
        try await amqp.send(message, outconn: outconn, exchange: exchange, routingKey: routingKey, properties: properties,
                            headers: headers, cid: context.cid)
    }

    func invokeRetry(_ request: InvokeRetryRequest, from context: ServiceContext) async throws -> InvokeRetryResult {
        try RetryPolicy.check(request)
        let runner = InvokeRetryRunner(invoker: invoker)
        switch request.mode {
        case .blocking:
            return .response(try await runner.blocking(request, caller: context.serviceName))
        case .asyncFallback:
            return try await runner.fallback(request, context: context)
        case .background:
            return .pending(cid: try await runner.background(request, context: context))
        }
    }

    func httpRequest(_ request: OutgoingHTTPRequest, from context: ServiceContext) async throws -> OutgoingHTTPResponse {
        guard let http = invoker.outgoing.http else {
            throw ServiceError(.httpUnknownOutconn, "no outgoing HTTP connection named '\(request.connection)'")
        }
        return try await http.request(request, cid: context.cid)
    }

    nonisolated(nonsending) func kvdbExecute(_ command: [String], from context: ServiceContext) async throws -> RedisValue {
        guard let kvdb = invoker.outgoing.kvdb else {
            throw ServiceError(.kvdbUnavailable, "kvdb is not configured in this server")
        }
        return try await kvdb.execute(command)
    }

    nonisolated(nonsending) func kvdbPipeline(_ commands: [[String]], from context: ServiceContext) async throws -> [RedisValue] {
        guard let kvdb = invoker.outgoing.kvdb else {
            throw ServiceError(.kvdbUnavailable, "kvdb is not configured in this server")
        }
        return try await kvdb.pipeline(commands)
    }
}

/// The outgoing connections services reach through their context.
public struct OutgoingConnections: Sendable {
    public var amqp: AMQPOutconns?
    public var kvdb: KVDBService?
    public var http: HTTPOutconns?

    public init(amqp: AMQPOutconns? = nil, kvdb: KVDBService? = nil, http: HTTPOutconns? = nil) {
        self.amqp = amqp
        self.kvdb = kvdb
        self.http = http
    }
}

extension Logger.Level {
    init(_ level: ServiceLogger.Level) {
        switch level {
        case .debug: self = .debug
        case .info: self = .info
        case .warning: self = .warning
        case .error: self = .error
        }
    }
}
