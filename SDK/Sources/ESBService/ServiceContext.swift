import Foundation

/// Everything a service may use while it handles one call.
public struct ServiceContext: Sendable {
    /// The correlation id of this call.
    public let cid: String
    /// The name of the service being called.
    public let serviceName: String
    /// Logs with the call's cid and service name attached.
    public let logger: ServiceLogger
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
}

/// The server behind a ``ServiceContext``: implemented by `esbd`, never by services.
@_spi(ESBHost)
public protocol ServiceHost: Sendable {}

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
