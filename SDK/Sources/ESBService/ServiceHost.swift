import Foundation

/// The server behind a ``ServiceContext``: implemented by `esbd`, never by services.
///
/// Every requirement has a default that throws `esb.not_configured`, so a host can offer
/// features as they land.
@_spi(ESBHost)
public protocol ServiceHost: Sendable {
    func invoke(_ name: String, payload: Data, from context: ServiceContext) async throws -> ServiceResponse
    func invokeAsync(_ name: String, payload: Data, callback: String?, from context: ServiceContext) async throws -> String
    func amqpSend(_ message: Data, outconn: String, exchange: String, routingKey: String,
                  properties: AMQPProperties, headers: [String: AMQPHeaderValue],
                  from context: ServiceContext) async throws
    nonisolated(nonsending) func kvdbExecute(_ command: [String], from context: ServiceContext) async throws -> RedisValue
    nonisolated(nonsending) func kvdbPipeline(_ commands: [[String]], from context: ServiceContext) async throws -> [RedisValue]
    func httpRequest(_ request: OutgoingHTTPRequest, from context: ServiceContext) async throws -> OutgoingHTTPResponse
    func invokeRetry(_ request: InvokeRetryRequest, from context: ServiceContext) async throws -> InvokeRetryResult
}

@_spi(ESBHost)
extension ServiceHost {
    public func invoke(_ name: String, payload: Data, from context: ServiceContext) async throws -> ServiceResponse {
        throw ServiceError(.notConfigured, "invoke is not available in this server")
    }
    public func invokeAsync(_ name: String, payload: Data, callback: String?, from context: ServiceContext) async throws -> String {
        throw ServiceError(.notConfigured, "invokeAsync is not available in this server")
    }
    public func amqpSend(_ message: Data, outconn: String, exchange: String, routingKey: String,
                         properties: AMQPProperties, headers: [String: AMQPHeaderValue],
                         from context: ServiceContext) async throws {
        throw ServiceError(.notConfigured, "outgoing AMQP connection '\(outconn)': AMQP is not configured in this server")
    }
    public nonisolated(nonsending) func kvdbExecute(_ command: [String], from context: ServiceContext) async throws -> RedisValue {
        throw ServiceError(.kvdbUnavailable, "kvdb is not configured in this server")
    }
    public nonisolated(nonsending) func kvdbPipeline(_ commands: [[String]], from context: ServiceContext) async throws -> [RedisValue] {
        throw ServiceError(.kvdbUnavailable, "kvdb is not configured in this server")
    }
    public func httpRequest(_ request: OutgoingHTTPRequest, from context: ServiceContext) async throws -> OutgoingHTTPResponse {
        throw ServiceError(.notConfigured, "outgoing HTTP connection '\(request.connection)': not available in this server")
    }
    public func invokeRetry(_ request: InvokeRetryRequest, from context: ServiceContext) async throws -> InvokeRetryResult {
        throw ServiceError(.notConfigured, "invoke/retry is not available in this server")
    }
}
