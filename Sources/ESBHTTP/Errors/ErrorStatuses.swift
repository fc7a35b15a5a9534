import ESBCore
import ESBService
import Hummingbird

/// The one place domain errors get their HTTP statuses. The admin API, the dashboard, the
/// channels and the OpenAPI document all read them from here.
extension ObjectError: HTTPResponseError {
    public var status: HTTPResponse.Status { Self.status(of: code) }

    static func status(of code: Code) -> HTTPResponse.Status {
        switch code {
        case .invalid: .unprocessableContent
        case .duplicate, .inUse: .conflict
        case .notFound: .notFound
        }
    }

    /// The API's error document for it.
    var apiError: APIError { APIError(status, code: code.rawValue, message, field: field) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try apiError.response(from: request, context: context)
    }
}

extension ServiceError.Code {
    /// The status of an operation that failed with this code; nil for codes that are no
    /// operation's own failure (what a service throws fails its call with 500 whatever the
    /// code: see ``ErrorStatuses/invoke(_:)``).
    var httpStatus: HTTPResponse.Status? {
        switch self {
        case .invokeUnknownService, .amqpUnknownOutconn: .notFound
        case .invokeInactive, .amqpPoolTimeout, .amqpConnectionFailed: .serviceUnavailable
        case .amqpInactive: .conflict
        case .amqpReturned, .amqpChannelClosed: .unprocessableContent
        case .amqpNacked: .badGateway
        case .amqpConfirmTimeout: .gatewayTimeout
        default: nil
        }
    }
}

/// What each kind of operation can fail with, for the routes and the OpenAPI document.
enum ErrorStatuses {
    /// A call of a service: the invoker's own failures; anything the service throws is 500.
    static let invokeCodes: [ServiceError.Code] = [.invokeUnknownService, .invokeInactive]
    /// A publish through an outgoing AMQP connection.
    static let publishCodes: [ServiceError.Code] = [
        .amqpUnknownOutconn, .amqpInactive, .amqpReturned, .amqpChannelClosed, .amqpNacked, .amqpConfirmTimeout,
        .amqpPoolTimeout, .amqpConnectionFailed,
    ]

    /// The status a call failing with `error` answers.
    static func invoke(_ error: any Error) -> HTTPResponse.Status {
        guard let code = (error as? ServiceError)?.code, invokeCodes.contains(code), let status = code.httpStatus else {
            return .internalServerError
        }
        return status
    }

    /// The status a publish failing with `error` answers: a failure outside the table (a
    /// pool being rebuilt) is the broker side's, 503.
    static func publish(_ error: ServiceError) -> HTTPResponse.Status {
        error.code.httpStatus ?? .serviceUnavailable
    }

    /// Status code to the error codes answering it, for the OpenAPI document.
    static func documented(_ codes: [ServiceError.Code]) -> [Int: [String]] {
        codes.reduce(into: [:]) { table, code in
            if let status = code.httpStatus { table[Int(status.code), default: []].append(code.rawValue) }
        }
    }

    static func documented(_ codes: [ObjectError.Code]) -> [Int: [String]] {
        codes.reduce(into: [:]) { table, code in table[Int(ObjectError.status(of: code).code), default: []].append(code.rawValue) }
    }
}
