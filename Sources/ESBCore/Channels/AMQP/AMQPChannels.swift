import ESBAMQP
import ESBConcurrency
import ESBStore
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// The AMQP channels: one ``ConsumerGroup`` per active `channel_amqp`, restarted live when
/// its channel or definition changes (only that channel: its in-flight deliveries finish
/// and are acked first, then its new consumers start). A broker that is down delays
/// nothing: consumers connect in the background and back off.
///
/// A service of the server's group, stopped before the outgoing pools its services send
/// through: at a graceful shutdown every consumer cancels, in-flight deliveries finish
/// within `graceful_shutdown_seconds`, and what is left stays unacked for the broker to
/// redeliver.
public final class AMQPChannels: ServiceLifecycle.Service, Sendable {
    private struct Entry: Sendable {
        var settings: AMQPChannelSettings
        var handler: AMQPChannelConsumer?
        var group: ConsumerGroup?
        /// The previous consumers' drain; this entry's consumers start after it.
        var restart: Task<Void, Never>?
    }

    private let store: ObjectStore
    private let invoker: ServiceInvoker
    private let server: String
    private let gracefulSeconds: @Sendable () -> Int
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])
    /// Set under `entries`' lock at shutdown: a reload racing it starts no consumer.
    private let stopped = Atomic<Bool>(false)
    /// Reloads run one at a time, in the order changes were committed.
    private let reloads = SerialTasks<Int>()
    /// Consumers draining after an edit replaced or removed them.
    private let retiring = Mutex<[ConsumerGroup]>([])
    /// Channels whose gauges were last recorded.
    private let gauged = Mutex<Set<String>>([])

    public init(store: ObjectStore, invoker: ServiceInvoker, server: String, gracefulSeconds: @escaping @Sendable () -> Int,
                logger: Logger) {
        self.store = store
        self.invoker = invoker
        self.server = server
        self.gracefulSeconds = gracefulSeconds
        self.logger = logger
    }

    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown(grace: .seconds(gracefulSeconds()))
    }

    /// Starts the consumers now and again after every change to AMQP definitions and channels.
    public func start() async {
        await reload()
        store.observe([ObjectKinds.amqpDefinition, ObjectKinds.amqpChannel]) { [weak self] in await self?.reload() }
    }

    /// Applies the ODB's channels: consumers for new or changed ones, old ones drained.
    /// Cancelled (a shutdown) while it reads the ODB, it keeps the current consumers.
    public func reload() async {
        await reloads.run(0, cancellable: true) { [self] in await apply() }
    }

    private func apply() async {
        let desired: [String: AMQPChannelSettings]
        do {
            let definitions = Dictionary(uniqueKeysWithValues: try await store.listWithSecrets(ObjectKinds.amqpDefinition)
                .map { ($0.fields["name"]?.string ?? "", $0) })
            var settings: [String: AMQPChannelSettings] = [:]
            for channel in try await store.list(ObjectKinds.amqpChannel) {
                guard let name = channel["name"]?.string, let definition = definitions[channel["def"]?.string ?? ""] else { continue }
                settings[name] = AMQPChannelSettings(channel: channel, definition: definition.fields, password: definition.secret,
                                                     server: server)
            }
            desired = settings
        } catch {
            if !Task.isCancelled {
                logger.error("cannot load AMQP channels; keeping the current consumers", metadata: ["esb.error": "\(error)"])
            }
            return
        }
        entries.withLock { entries in
            guard !stopped.load(ordering: .relaxed) else { return }
            for (name, entry) in entries where desired[name] == nil {
                retire(entry, name: name)
                entries[name] = nil
                logger.info("AMQP channel stopped", metadata: ["amqp.channel": "\(name)"])
            }
            for (name, settings) in desired where entries[name]?.settings != settings {
                var entry = Entry(settings: settings)
                if let old = entries[name] {
                    // Restarted once the old consumers drained (their deliveries acked).
                    let drained = retire(old, name: name)
                    entry.restart = Task { [weak self] in
                        await drained?.value
                        self?.startConsumers(name, settings: settings)
                    }
                } else if settings.isActive {
                    entry.handler = AMQPChannelConsumer(settings: settings, invoker: invoker, logger: logger)
                    entry.group = ConsumerGroup(settings.consumers, handler: entry.handler!)
                }
                entries[name] = entry
                logger.info("AMQP channel ready", metadata: [
                    "amqp.channel": "\(name)", "amqp.broker": "\(settings.consumers.broker.address)",
                    "amqp.queue": "\(settings.consumers.queue)", "esb.service": "\(settings.service)",
                    "amqp.active": "\(settings.isActive)", "amqp.consumers": "\(settings.consumers.consumers)",
                    "amqp.prefetch": "\(settings.consumers.prefetch)"])
            }
        }
    }

    /// Stops an entry's consumers in the background, letting in-flight deliveries finish
    /// (for up to ``retireGrace``: a service that hangs does not hold the channel's restart
    /// forever; what it still holds stays unacked and is redelivered to the new consumers).
    /// Returns the task that ends once they did (nil: there were none). Called under
    /// `entries`' lock, as ``startConsumers(_:settings:)`` runs: an entry waiting for its
    /// restart has no group yet, and its restart task will start none (it is no longer current).
    @discardableResult
    private func retire(_ entry: Entry, name: String) -> Task<Void, Never>? {
        guard let group = entry.group else { return entry.restart }
        retiring.withLock { $0.append(group) }
        return Task { [self] in
            await group.stop(grace: retireGrace)
            retiring.withLock { $0.removeAll { $0 === group } }
        }
    }

    /// How long an edited channel's old consumers may take to finish their deliveries: the
    /// longer of `graceful_shutdown_seconds` and a minute.
    private var retireGrace: Duration { .seconds(max(gracefulSeconds(), 60)) }

    /// Starts a restarted channel's consumers, if its settings are still the current ones.
    private func startConsumers(_ name: String, settings: AMQPChannelSettings) {
        entries.withLock { entries in
            guard !stopped.load(ordering: .relaxed), var entry = entries[name], entry.settings == settings,
                  entry.group == nil else { return }
            entry.restart = nil
            if settings.isActive {
                let handler = AMQPChannelConsumer(settings: settings, invoker: invoker, logger: logger)
                entry.handler = handler
                entry.group = ConsumerGroup(settings.consumers, handler: handler)
            }
            entries[name] = entry
        }
    }

    /// Each channel's consumers for `/esb/health`: degraded while an active channel has a
    /// consumer that does not consume, with why.
    public func health() -> [String: HealthReport.Component] {
        var components: [String: HealthReport.Component] = [:]
        for (name, entry) in entries.withLock({ $0 }) {
            components["amqp_channel.\(name)"] = component(entry)
        }
        return components
    }

    /// One channel's state (the dashboard's page), nil when there is no such channel.
    public func state(_ name: String) -> HealthReport.Component? {
        entries.withLock { $0[name] }.map(component)
    }

    private func component(_ entry: Entry) -> HealthReport.Component {
        guard entry.settings.isActive else { return .init(status: .ok, detail: "inactive") }
        guard let group = entry.group, let handler = entry.handler else {
            return .init(status: .degraded, detail: "restarting: the previous consumers finish their deliveries")
        }
        let health = ChannelHealth(settings: entry.settings, snapshots: group.consumers, counts: handler.consumerCounts)
        let errors = Set(health.consumers.filter { $0.status != "consuming" }.compactMap(\.lastError))
        var detail = "\(health.consuming)/\(health.consumers.count) consuming '\(entry.settings.consumers.queue)' "
            + "on \(entry.settings.consumers.broker.address)"
        if !errors.isEmpty { detail += "; " + errors.sorted().joined(separator: "; ") }
        return .init(status: health.consuming == health.consumers.count ? .ok : .degraded, detail: detail, channel: health)
    }

    /// Deliveries in flight and consumers consuming per channel, for the metrics scrape; a
    /// deleted channel's gauges go to 0.
    public func refreshGauges() {
        let current = entries.withLock { $0 }
        let gone = gauged.withLock { gauged in
            defer { gauged = Set(current.keys) }
            return gauged.subtracting(current.keys)
        }
        for name in gone {
            Gauge(label: "esb_amqp_channel_in_flight", dimensions: [("channel", name)]).record(0)
            Gauge(label: "esb_amqp_channel_consuming", dimensions: [("channel", name)]).record(0)
        }
        for (name, entry) in current {
            let consumers = entry.group?.consumers ?? []
            let dimensions = [("channel", name)]
            Gauge(label: "esb_amqp_channel_in_flight", dimensions: dimensions).record(consumers.reduce(0) { $0 + $1.inFlight })
            Gauge(label: "esb_amqp_channel_consuming", dimensions: dimensions)
                .record(consumers.filter { $0.status == .consuming }.count)
        }
    }

    /// Cancels every consumer and lets in-flight deliveries finish within `grace` (shutdown).
    public func shutdown(grace: Duration) async {
        let groups = entries.withLock { entries -> [ConsumerGroup] in
            stopped.store(true, ordering: .relaxed)
            defer { entries.removeAll() }
            return entries.values.compactMap(\.group)
        } + retiring.withLock { $0 }
        // Restarts waiting for a drain start nothing now (stopped); draining groups get the
        // same grace (a later deadline never replaces an earlier one).
        await withTaskGroup(of: Void.self) { tasks in
            for group in groups { tasks.addTask { await group.stop(grace: grace) } }
        }
    }
}
