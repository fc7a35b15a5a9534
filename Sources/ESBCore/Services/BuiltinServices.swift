import ESBService
import Foundation

/// `esb.ping`: answers `{"pong": true}`, for checking the invocation path itself.
struct PingService: Service {
    static let name = "esb.ping"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        ServiceResponse(payload: Data(#"{"pong":true}"#.utf8))
    }
}

/// `esb.helpers.echo`: returns its input as is.
struct EchoService: Service {
    static let name = "esb.helpers.echo"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        let type = request.headers["content-type"] ?? "application/json"
        return ServiceResponse(payload: request.payload, contentType: type)
    }
}

/// `esb.helpers.input-logger`: logs its input and returns an empty response.
struct InputLoggerService: Service {
    static let name = "esb.helpers.input-logger"
    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        context.logger.info("input (channel \(request.channel)): \(request.text)")
        return .empty
    }
}

enum BuiltinServices {
    static let all: [any Service.Type] = [PingService.self, EchoService.self, InputLoggerService.self]
}
