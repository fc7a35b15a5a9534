import ESBCore
import ESBStore
import Foundation
import Hummingbird
import Logging

/// An error answered as `{"error": {"code", "message", "field"}}` (plus `cid` for failed calls).
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var field: String?
    /// The correlation id of a failed service call.
    public var cid: String?
    /// Every problem of an enmasse import, each with its location.
    public var problems: [ImportError.Problem]?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, code: String, _ message: String, field: String? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
    }

    public static func notFound(_ message: String) -> APIError { .init(.notFound, code: "not_found", message) }
    /// 500 for an unexpected error: its text may name files, addresses or internals, so it goes
    /// to the log under a new cid and the caller gets the cid.
    static func `internal`(_ error: any Error, path: String, logger: Logger) -> APIError {
        let cid = ServiceInvoker.newCID()
        logger.error("request failed", metadata: ["esb.path": "\(path)", "esb.cid": "\(cid)", "esb.error": "\(error)"])
        var apiError = APIError(.internalServerError, code: "internal", "internal error; the server log has the details under cid \(cid)")
        apiError.cid = cid
        return apiError
    }

    /// 503 `odb.unavailable`: the ODB cannot be reached now. The engine's text goes to the
    /// log; the caller learns only that the ODB is unavailable and may retry.
    static func odbUnavailable(_ error: any Error, logger: Logger) -> APIError {
        logger.warning("request needs the ODB, which cannot be reached", metadata: ["esb.error": "\(StoreError.describe(error))"])
        var apiError = APIError(.serviceUnavailable, code: "odb.unavailable",
                                "the ODB cannot be reached now; the server reconnects by itself, try again shortly")
        apiError.headers[.retryAfter] = "5"
        return apiError
    }

    public static func unauthorized() -> APIError {
        var error = APIError(.unauthorized, code: "unauthorized", "valid admin credentials are required (HTTP basic auth)")
        error.headers[.wwwAuthenticate] = #"Basic realm="SwiftESB", charset="UTF-8""#
        return error
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
            @ExplicitNull var field: String? = nil
            var cid: String?
            var problems: [ImportError.Problem]?
        }
        var error: Detail
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = Body(error: .init(code: code, message: message, field: field, cid: cid, problems: problems))
        var response = try JSON.response(body, status: status)
        for field in headers { response.headers.append(field) }
        response.headers[.xContentTypeOptions] = "nosniff"
        return response
    }
}
