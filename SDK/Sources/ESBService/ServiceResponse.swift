import Foundation

/// What a service returns: status, body, content type and headers.
public struct ServiceResponse: Sendable {
    /// HTTP-style status code; 200 by default.
    public var status: Int
    /// The response body.
    public var payload: Data
    /// The body's media type; JSON by default.
    public var contentType: String
    /// Extra response headers.
    public var headers: [String: String]

    /// Creates a response; every argument has the usual default.
    public init(status: Int = 200, payload: Data = Data(),
                contentType: String = "application/json", headers: [String: String] = [:]) {
        self.status = status
        self.payload = payload
        self.contentType = contentType
        self.headers = headers
    }

    /// Creates a response from a UTF-8 text payload.
    public init(status: Int = 200, payload: String,
                contentType: String = "application/json", headers: [String: String] = [:]) {
        self.init(status: status, payload: Data(payload.utf8), contentType: contentType, headers: headers)
    }

    /// A JSON response encoding `value`.
    public static func json(_ value: any Encodable) throws -> ServiceResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return ServiceResponse(payload: try encoder.encode(value))
    }

    /// A `text/plain` response.
    public static func text(_ text: String) -> ServiceResponse {
        ServiceResponse(payload: Data(text.utf8), contentType: "text/plain; charset=utf-8")
    }

    /// A response carrying raw bytes of the given type.
    public static func data(_ data: Data, contentType: String) -> ServiceResponse {
        ServiceResponse(payload: data, contentType: contentType)
    }

    /// An empty response, status 204.
    public static var empty: ServiceResponse {
        ServiceResponse(status: 204, payload: Data(), contentType: "application/json")
    }

    /// The payload decoded as UTF-8 (invalid bytes replaced).
    public var text: String { String(decoding: payload, as: UTF8.self) }
}
