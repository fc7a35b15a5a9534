import Foundation

/// Everything a service may use while it handles one call.
///
/// Sendable: services may hand it to task groups and `async let`.
public struct ServiceContext: Sendable {
    /// The correlation id of this call.
    public let cid: String
    /// The name of the service being called.
    public let serviceName: String
    /// Logs with the call's cid and service name attached.
    public let logger: ServiceLogger
    /// Outgoing connections: `outgoing.amqp.send(…)`, `outgoing.http["name"]`.
    public var outgoing: Outgoing { Outgoing(context: self) }
    /// Redis (the `[kvdb]` section of server.conf).
    public var kvdb: KVDB { KVDB(context: self) }
    /// Integration patterns: `patterns.invokeRetry`.
    public var patterns: Patterns { Patterns(context: self) }
    /// The server side of the context; services do not use it directly.
    @_spi(ESBHost) public let host: any ServiceHost

    /// Creates a context; the server builds these.
    @_spi(ESBHost)
    public init(cid: String, serviceName: String, logger: ServiceLogger, host: any ServiceHost) {
        self.cid = cid
        self.serviceName = serviceName
        self.logger = logger
        self.host = host
    }

    /// Invokes another service in-process and waits for its response.
    /// - Throws: ``ServiceError`` `invoke.unknown_service`, `invoke.inactive`, `invoke.self_invocation`,
    ///   or whatever the target threw.
    public func invoke(_ name: String, payload: Data) async throws -> ServiceResponse {
        try await host.invoke(name, payload: payload, from: self)
    }

    /// Invokes another service in-process with a UTF-8 text payload.
    public func invoke(_ name: String, payload: String) async throws -> ServiceResponse {
        try await invoke(name, payload: Data(payload.utf8))
    }

    /// Starts another service in the background and returns its cid at once; when it is done
    /// the `callback` service, if given, is invoked with channel `callback`.
    public func invokeAsync(_ name: String, payload: Data, callback: String? = nil) async throws -> String {
        try await host.invokeAsync(name, payload: payload, callback: callback, from: self)
    }

    /// ``invokeAsync(_:payload:callback:)`` with a UTF-8 text payload.
    public func invokeAsync(_ name: String, payload: String, callback: String? = nil) async throws -> String {
        try await invokeAsync(name, payload: Data(payload.utf8), callback: callback)
    }
}

/// A logger handed to services; each line carries the call's cid and service name.
public struct ServiceLogger: Sendable {
    /// Severity of a service's log line.
    public enum Level: String, Sendable {
        case debug, info, warning, error
    }

    private let sink: @Sendable (Level, String) -> Void

    /// Creates a logger writing through `sink`; the server builds these.
    public init(sink: @escaping @Sendable (Level, String) -> Void) {
        self.sink = sink
    }

    public func debug(_ message: String) { sink(.debug, message) }
    public func info(_ message: String) { sink(.info, message) }
    public func warning(_ message: String) { sink(.warning, message) }
    public func error(_ message: String) { sink(.error, message) }
}
