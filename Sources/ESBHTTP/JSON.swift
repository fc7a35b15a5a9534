import ESBCore
import Foundation
import Hummingbird

/// JSON encoding shared by every route: snake_case keys are spelled out by the DTOs,
/// keys are sorted so responses and exports diff cleanly.
enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Decodes a request body; a body that is not JSON is 422 naming the byte offset, one that
    /// does not fit `T` 422 naming the field (`properties.priority`), never a decoder's dump.
    static func decodeBody<T: Decodable>(_ type: T.Type, from data: Data, what: String, expected: String) throws -> T {
        if let problem = JSONSyntax.problem(in: data) {
            throw APIError(.unprocessableContent, code: "invalid", "\(what): the body is not JSON: \(problem)")
        }
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            let context: DecodingError.Context? = switch error {
            case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): context
            case .keyNotFound(let key, let context):
                DecodingError.Context(codingPath: context.codingPath + [key], debugDescription: "is missing")
            @unknown default: nil
            }
            let path = context?.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") ?? ""
            guard !path.isEmpty else {
                throw APIError(.unprocessableContent, code: "invalid", "\(what): the body must be \(expected)")
            }
            let problem = if case .keyNotFound = error { "is missing" } else { "has the wrong type" }
            throw APIError(.unprocessableContent, code: "invalid", "\(what): field '\(path)' \(problem); the body must be \(expected)",
                           field: path)
        }
    }
}
