import ESBAMQP
import ESBConcurrency
import ESBService
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The outgoing AMQP connections: one pool per active `outconn_amqp`, rebuilt live when its
/// outconn or definition changes (only that pool; in-flight sends on the old one finish).
/// A broker that is down never delays anything: pools connect in the background.
///
/// A service of the server's group: replaced pools drain inside its `run()`, and when the
/// group stops it (after the HTTP server and the scheduler) every pool drains.
public final class AMQPOutconns: ServiceLifecycle.Service, Sendable {
    private struct Entry: Sendable {
        var settings: OutconnSettings
        var pool: Pool?
    }

    private let store: ObjectStore
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])
    /// Set under `entries`' lock at shutdown: a reload racing it builds no pool.
    private let stopped = Atomic<Bool>(false)
    /// Reloads run one at a time, in the order changes were committed.
    private let reloads = SerialTasks<Int>()
    /// Pools being drained after an edit replaced or removed them.
    private let retirements = BackgroundWork()

    public init(store: ObjectStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        await retirements.run { try? await gracefulShutdown() }
        // The drain is bounded by the pools' own confirm and connect timeouts; the group's
        // cancellation (its graceful time ran out) does not cut short the wait for confirms.
        await Task { await shutdown() }.value
    }

    /// Builds the pools now and again after every change to AMQP objects.
    public func start() async {
        await reload()
        store.observe([ObjectKinds.amqpDefinition, ObjectKinds.amqpOutconn]) { [weak self] in await self?.reload() }
    }

    /// Applies the ODB's AMQP objects: new pools for new or changed outconns, old ones drained.
    /// Cancelled (a shutdown) while it reads the ODB, it keeps the current pools.
    public func reload() async {
        await reloads.run(0, cancellable: true) { [self] in await apply() }
    }

    private func apply() async {
        let desired: [String: OutconnSettings]
        do {
            let definitions = Dictionary(uniqueKeysWithValues: try await store.listWithSecrets(ObjectKinds.amqpDefinition)
                .map { ($0.fields["name"]?.string ?? "", $0) })
            var settings: [String: OutconnSettings] = [:]
            for outconn in try await store.list(ObjectKinds.amqpOutconn) {
                guard let name = outconn["name"]?.string, let definition = definitions[outconn["def"]?.string ?? ""] else { continue }
                settings[name] = OutconnSettings(outconn: outconn, definition: definition.fields, password: definition.secret)
            }
            desired = settings
        } catch {
            if !Task.isCancelled {  // cancelled: the server stops
                logger.error("cannot load outgoing AMQP connections; keeping the current pools", metadata: ["esb.error": "\(error)"])
            }
            return
        }
        var retired: [(name: String, pool: Pool, successor: Pool?)] = []
        entries.withLock { entries in
            guard !stopped.load(ordering: .relaxed) else { return }
            for (name, entry) in entries where desired[name] == nil {
                if let pool = entry.pool { retired.append((name, pool, nil)) }
                entries[name] = nil
            }
            for (name, settings) in desired where entries[name]?.settings != settings {
                let pool = settings.isActive ? Pool(settings.pool, observer: AMQPMetrics(outconn: name, logger: logger)) : nil
                if let old = entries[name]?.pool { retired.append((name, old, pool)) }
                entries[name] = Entry(settings: settings, pool: pool)
                logger.info("outgoing AMQP connection ready", metadata: [
                    "amqp.outconn": "\(name)", "amqp.broker": "\(settings.pool.broker.address)",
                    "amqp.active": "\(settings.isActive)", "amqp.pool_size": "\(settings.pool.size)"])
            }
        }
        // Old pools finish their in-flight sends in the background (the edit does not wait);
        // sends still waiting move to the successor.
        for (name, pool, successor) in retired {
            await retirements.start {
                let waiting = await pool.shutdown()
                if let successor {
                    successor.adopt(waiting)
                } else {
                    waiting.forEach { $0.fail(AMQPError(.closed, "outgoing connection '\(name)' was deleted or deactivated")) }
                }
            }
        }
    }

    /// Publishes through `outconn`: the call's properties over the outconn's defaults, `x-esb-cid` added. Returns true when the broker confirmed
    /// the message, false when the outconn has confirms off (written to the socket).
    /// - Throws: ``ServiceError`` with the `amqp.*` code of what went wrong.
    @discardableResult
    public func send(_ body: Data, outconn: String, exchange: String, routingKey: String, properties: AMQPProperties,
                     headers: [String: AMQPHeaderValue], cid: String) async throws -> Bool {
        try Self.check(properties)
        try Self.check(exchange: exchange, routingKey: routingKey, headers: headers)
        for _ in 0..<2 {
            let entry = entries.withLock { $0[outconn] }
            guard let entry else {
                throw ServiceError(.amqpUnknownOutconn, "no outgoing AMQP connection named '\(outconn)'")
            }
            guard entry.settings.isActive, let pool = entry.pool else {
                throw ServiceError(.amqpInactive, "outgoing AMQP connection '\(outconn)' is inactive")
            }
            let message = entry.settings.message(body, exchange: exchange, routingKey: routingKey, properties: properties,
                                                 headers: headers, cid: cid)
            do {
                try await pool.send(message)
                return entry.settings.pool.confirm
            } catch let error as AMQPError where error.code == .closed {
                continue  // the pool was being replaced: once more with its successor
            } catch let error as AMQPError {
                throw Self.serviceError(error)
            }
        }
        throw ServiceError(.amqpConnectionFailed, "outgoing AMQP connection '\(outconn)' was being rebuilt; try again")
    }

    static func serviceError(_ error: AMQPError) -> ServiceError {
        let code: ServiceError.Code = switch error.code {
        case .returned: .amqpReturned
        case .nacked: .amqpNacked
        case .confirmTimeout: .amqpConfirmTimeout
        case .channelClosed: .amqpChannelClosed
        case .poolTimeout: .amqpPoolTimeout
        case .invalidMessage: .argumentInvalid
        default: .amqpConnectionFailed
        }
        return ServiceError(code, error.message)
    }

    /// Each outconn's pool state for `/esb/health`: degraded while no connection is up.
    public func health() -> [String: HealthReport.Component] {
        let snapshot = entries.withLock { $0 }
        var components: [String: HealthReport.Component] = [:]
        for (name, entry) in snapshot {
            guard let pool = entry.pool else {
                components["amqp.\(name)"] = .init(status: .ok, detail: "inactive")
                continue
            }
            let connections = pool.connections
            let connected = connections.filter { $0.status == .connected }.count
            let errors = Set(connections.filter { $0.status != .connected }.compactMap(\.lastError))
            var detail = "\(connected)/\(connections.count) connected to \(entry.settings.pool.broker.address)"
            if !errors.isEmpty { detail += "; " + errors.sorted().joined(separator: "; ") }
            components["amqp.\(name)"] = .init(status: connected > 0 ? .ok : .degraded, detail: detail,
                                               pool: PoolHealth(connections))
        }
        return components
    }

    /// In-flight messages and busy connections per outconn, for the metrics scrape.
    public func refreshGauges() {
        for (name, entry) in entries.withLock({ $0 }) {
            let connections = entry.pool?.connections ?? []
            let dimensions = [("outconn", name)]
            Gauge(label: "esb_amqp_in_flight", dimensions: dimensions).record(connections.reduce(0) { $0 + $1.inFlight })
            Gauge(label: "esb_amqp_pool_in_use", dimensions: dimensions).record(connections.filter { $0.inFlight > 0 }.count)
            Gauge(label: "esb_amqp_connected", dimensions: dimensions).record(connections.filter { $0.status == .connected }.count)
        }
    }

    /// Drains and closes every pool (shutdown): in-flight sends finish first.
    public func shutdown() async {
        let pools = entries.withLock { entries -> [Pool] in
            stopped.store(true, ordering: .relaxed)
            defer { entries.removeAll() }
            return entries.values.compactMap(\.pool)
        }
        await withTaskGroup(of: Void.self) { group in
            for pool in pools {
                group.addTask {
                    for waiting in await pool.shutdown() { waiting.fail(AMQPError(.closed, "the server is shutting down")) }
                }
            }
        }
    }
}

extension AMQPOutconns {
    /// Refuses names AMQP carries as short strings (at most 255 bytes) that are longer.
    /// - Throws: ``ServiceError`` `argument.invalid` naming the argument.
    static func check(exchange: String, routingKey: String, headers: [String: AMQPHeaderValue]) throws {
        let call = "outgoing.amqp.send"
        if exchange.utf8.count > 255 {
            throw ServiceError.invalidArgument(call, "exchange", "\(exchange.utf8.count) bytes", allowed: "at most 255 bytes")
        }
        if routingKey.utf8.count > 255 {
            throw ServiceError.invalidArgument(call, "routingKey", "\(routingKey.utf8.count) bytes", allowed: "at most 255 bytes")
        }
        if let long = headers.keys.first(where: { $0.utf8.count > 255 }) {
            throw ServiceError.invalidArgument(call, "headers", "a name of \(long.utf8.count) bytes", allowed: "names of at most 255 bytes")
        }
        func badDate(_ value: AMQPHeaderValue) -> Date? {
            switch value {
            case .timestamp(let date):
                let seconds = date.timeIntervalSince1970
                return seconds.isFinite && seconds >= 0 && seconds < 18_446_744_073_709_551_616 ? nil : date
            case .table(let table): return table.values.lazy.compactMap(badDate).first
            case .array(let array): return array.lazy.compactMap(badDate).first
            default: return nil
            }
        }
        if let date = headers.values.lazy.compactMap(badDate).first {
            throw ServiceError.invalidArgument(call, "headers", date, allowed: "timestamps from 1970 on")
        }
    }

    /// Refuses property values AMQP cannot carry, which would otherwise be cut to fit.
    /// - Throws: ``ServiceError`` `argument.invalid` naming the property.
    static func check(_ properties: AMQPProperties) throws {
        let call = "outgoing.amqp.send"
        if let mode = properties.deliveryMode, !(1...2).contains(mode) {
            throw ServiceError.invalidArgument(call, "properties.deliveryMode", mode, allowed: "1 (transient) or 2 (persistent)")
        }
        if let priority = properties.priority, !(0...255).contains(priority) {
            throw ServiceError.invalidArgument(call, "properties.priority", priority, allowed: "from 0 to 255")
        }
        if let expiration = properties.expiration, expiration < 0 {
            throw ServiceError.invalidArgument(call, "properties.expiration", expiration, allowed: "0 or more milliseconds")
        }
        let shortStrings: [(String, String?)] = [
            ("contentType", properties.contentType), ("contentEncoding", properties.contentEncoding),
            ("userId", properties.userId), ("appId", properties.appId), ("correlationId", properties.correlationId),
            ("replyTo", properties.replyTo), ("messageId", properties.messageId), ("type", properties.type),
        ]
        for case let (name, value?) in shortStrings where value.utf8.count > 255 {
            throw ServiceError.invalidArgument(call, "properties.\(name)", "\(value.utf8.count) bytes", allowed: "at most 255 bytes")
        }
        if let timestamp = properties.timestamp {
            let seconds = timestamp.timeIntervalSince1970
            guard seconds.isFinite, seconds >= 0, seconds < 18_446_744_073_709_551_616 else {
                throw ServiceError.invalidArgument(call, "properties.timestamp", timestamp, allowed: "a date from 1970 on")
            }
        }
    }
}
