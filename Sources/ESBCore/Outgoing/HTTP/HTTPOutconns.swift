import AsyncHTTPClient
import ESBConcurrency
import ESBService
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// The outgoing HTTP connections: one AsyncHTTPClient per active `outconn_plain_http`
/// (keep-alive pool of `pool_size` connections, TLS with the system's CAs), rebuilt live when
/// the outconn's address, pool or timeout changes; the old client is shut down once the
/// requests it carries have had their time.
///
/// A service of the server's group: replaced clients wind down inside its `run()`, and when
/// the group stops it every client is shut down.
public final class HTTPOutconns: ServiceLifecycle.Service, Sendable {
    private struct Entry: Sendable {
        var settings: HTTPOutconnSettings
        var client: HTTPClient?
        /// Made once per outconn: a metric handle per request costs a factory lookup.
        var metrics: HTTPOutconnMetrics
    }

    private let store: ObjectStore
    private let logger: Logger
    private let entries = Mutex<[String: Entry]>([:])
    private let reloads = SerialTasks<Int>()
    /// Clients replaced by an edit, shut down once their requests have had their time.
    private let retirements = BackgroundWork()

    public init(store: ObjectStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        await retirements.run { try? await gracefulShutdown() }
        await shutdown()
    }

    /// Loads the outconns now and again after every change to them or to security definitions.
    public func start() async {
        await reload()
        store.observe([ObjectKinds.httpOutconn, ObjectKinds.basicAuth]) { [weak self] in await self?.reload() }
    }

    public func reload() async {
        await reloads.run(0, cancellable: true) { [self] in await apply() }
    }

    private func apply() async {
        let desired: [String: HTTPOutconnSettings]
        do {
            let definitions = Dictionary(uniqueKeysWithValues: try await store.listWithSecrets(ObjectKinds.basicAuth)
                .map { ($0.fields["name"]?.string ?? "", $0) })
            desired = Dictionary(uniqueKeysWithValues: try await store.list(ObjectKinds.httpOutconn).map {
                let settings = HTTPOutconnSettings(outconn: $0, definitions: definitions)
                return (settings.name, settings)
            })
        } catch {
            if !Task.isCancelled {  // cancelled: the server stops
                logger.error("cannot load outgoing HTTP connections; keeping the current ones", metadata: ["esb.error": "\(error)"])
            }
            return
        }
        for settings in desired.values where settings.addressHasCredentials {
            logger.warning("outgoing HTTP connection's address carries user:password@; move the credentials to a basic-auth definition (edits refuse such an address)",
                           metadata: ["esb.outconn": "\(settings.name)"])
        }
        var retired: [(HTTPClient, Duration)] = []
        entries.withLock { entries in
            for (name, entry) in entries where desired[name]?.poolKey != entry.settings.poolKey || desired[name]?.isActive != true {
                if let client = entry.client { retired.append((client, entry.settings.timeout)) }
                entries[name]?.client = nil
            }
            for (name, settings) in desired {
                let client = settings.isActive ? entries[name]?.client ?? Self.makeClient(settings) : nil
                entries[name] = Entry(settings: settings, client: client,
                                      metrics: entries[name]?.metrics ?? HTTPOutconnMetrics(outconn: name))
            }
            for name in entries.keys where desired[name] == nil { entries[name] = nil }
        }
        for (client, timeout) in retired {
            // In-flight requests end within their timeout (at server stop, at once); then the old pool goes.
            await retirements.start {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: timeout + .seconds(1)) }
                try? await client.shutdown()
            }
        }
        logger.info("outgoing HTTP connections loaded", metadata: ["esb.outconns": "\(desired.count)"])
    }

    private static func makeClient(_ settings: HTTPOutconnSettings) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: settings.poolSize)
        let timeout = TimeAmount.nanoseconds(Int64(settings.timeout / .nanoseconds(1)))
        configuration.timeout = .init(connect: timeout, read: timeout)
        configuration.redirectConfiguration = settings.followRedirects ? .follow(max: 5, allowCycles: false) : .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Calls the outconn: its address and path (with `{param}`s filled), the request's query,
    /// headers and body, basic auth when it has security, `x-esb-cid`, within `timeout_ms`.
    /// - Throws: ``ServiceError`` `http.unknown_outconn`, `http.inactive`, `http.invalid_request`,
    ///   `http.timeout`, `http.connection_failed`, `http.status` (a non-2xx answer).
    public func request(_ call: OutgoingHTTPRequest, cid: String) async throws -> OutgoingHTTPResponse {
        guard let entry = entries.withLock({ $0[call.connection] }) else {
            throw ServiceError(.httpUnknownOutconn, "no outgoing HTTP connection named '\(call.connection)'")
        }
        let settings = entry.settings
        guard settings.isActive, let client = entry.client else {
            throw ServiceError(.httpInactive, "outgoing HTTP connection '\(call.connection)' is inactive")
        }
        if let problem = settings.securityProblem {
            throw ServiceError(.httpInactive, "outgoing HTTP connection '\(call.connection)': \(problem)")
        }
        let url = try settings.url(pathParameters: call.pathParameters, query: call.query)
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: call.method.uppercased())
        for (name, value) in call.headers { request.headers.replaceOrAdd(name: name, value: value) }
        request.headers.replaceOrAdd(name: "x-esb-cid", value: cid)
        if !request.headers.contains(name: "accept") { request.headers.add(name: "accept", value: settings.contentType) }
        if let credentials = settings.credentials, !request.headers.contains(name: "authorization") {
            let token = Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
            request.headers.add(name: "authorization", value: "Basic \(token)")
        }
        if let body = call.body {
            if !request.headers.contains(name: "content-type") { request.headers.add(name: "content-type", value: settings.contentType) }
            request.body = .bytes(ByteBuffer(data: body))
        }
        let metrics = entry.metrics
        let start = ContinuousClock.now
        let label = "outgoing HTTP connection '\(settings.name)': \(request.method.rawValue) \(url)"
        do {
            let response = try await client.execute(request, deadline: .now() + .nanoseconds(Int64(settings.timeout / .nanoseconds(1))))
            let payload = Data(buffer: try await response.body.collect(upTo: 64 << 20))
            metrics.record(status: Int(response.status.code), duration: ContinuousClock.now - start)
            var headers: [String: String] = [:]
            for header in response.headers {
                let name = header.name.lowercased()
                headers[name] = headers[name].map { $0 + ", " + header.value } ?? header.value
            }
            guard (200..<300).contains(Int(response.status.code)) else {
                let excerpt = String(decoding: payload.prefix(300), as: UTF8.self)
                throw ServiceError(.httpStatus, "\(label) answered \(response.status.code) \(response.status.reasonPhrase)"
                                   + (excerpt.isEmpty ? "" : ": \(excerpt)"))
            }
            return OutgoingHTTPResponse(status: Int(response.status.code), headers: headers, payload: payload)
        } catch let error as ServiceError {
            throw error
        } catch {
            metrics.record(status: nil, duration: ContinuousClock.now - start)
            throw Self.serviceError(error, label: label, timeout: settings.timeout)
        }
    }

    static func serviceError(_ error: any Error, label: String, timeout: Duration) -> ServiceError {
        if let client = error as? HTTPClientError,
           [.deadlineExceeded, .readTimeout, .connectTimeout, .getConnectionFromPoolTimeout].contains(client) {
            return ServiceError(.httpTimeout, "\(label): no answer within \(timeout.milliseconds) ms")
        }
        return ServiceError(.httpConnectionFailed, "\(label): \(error)")
    }

    /// Closes every pool (at server stop).
    public func shutdown() async {
        let clients = entries.withLock { entries in
            defer { entries.removeAll() }
            return entries.values.compactMap(\.client)
        }
        for client in clients { try? await client.shutdown() }
    }
}

/// `esb_http_out_requests_total{outconn,status}` and `esb_http_out_duration_seconds{outconn}`;
/// status `error` when no answer came. Handles are made once per outconn and status.
final class HTTPOutconnMetrics: Sendable {
    let outconn: String
    private let duration: Timer
    private let requests = Mutex<[String: Counter]>([:])

    init(outconn: String) {
        self.outconn = outconn
        duration = Timer(label: "esb_http_out_duration_seconds", dimensions: [("outconn", outconn)], preferredDisplayUnit: .seconds)
    }

    func record(status: Int?, duration elapsed: Duration) {
        let label = status.map(String.init) ?? "error"
        let counter = requests.withLock { counters in
            if let known = counters[label] { return known }
            let made = Counter(label: "esb_http_out_requests_total", dimensions: [("outconn", outconn), ("status", label)])
            counters[label] = made
            return made
        }
        counter.increment()
        duration.record(duration: elapsed)
    }
}
