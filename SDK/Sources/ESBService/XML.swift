import Foundation
#if canImport(FoundationXML)
// Foundation's own XML (XMLParser, XMLDocument, XMLElement) comes with `import ESBService`:
// services need no other import and the SDK depends on no other package.
@_exported import FoundationXML
#endif

extension ServiceRequest {
    /// The payload parsed as an XML document.
    /// - Throws: ``ServiceError`` `request.invalid_xml` with the parser's reason.
    public func xml() throws -> XMLDocument {
        try XMLPayload.document(payload, what: "the request payload")
    }
}

extension OutgoingHTTPResponse {
    /// The body parsed as an XML document.
    /// - Throws: ``ServiceError`` `request.invalid_xml` with the parser's reason.
    public func xml() throws -> XMLDocument {
        try XMLPayload.document(payload, what: "the HTTP response")
    }
}

extension ServiceResponse {
    /// A response carrying `document` as `application/xml`.
    public static func xml(_ document: XMLDocument, status: Int = 200) -> ServiceResponse {
        ServiceResponse(status: status, payload: document.xmlData(options: [.nodeCompactEmptyElement]),
                        contentType: "application/xml; charset=utf-8")
    }
}

/// Parsing XML payloads for the SDK's helpers.
enum XMLPayload {
    static func document(_ data: Data, what: String) throws -> XMLDocument {
        if let problem = WellFormedness.problem(in: data) {
            throw ServiceError(.invalidXML, "\(what) is not well-formed XML: \(problem)")
        }
        do {
            return try XMLDocument(data: data)
        } catch {
            throw ServiceError(.invalidXML, "\(what) is not well-formed XML: \(error.localizedDescription)")
        }
    }
}

/// A strict well-formedness check. On Linux both XMLParser and XMLDocument accept a document
/// that simply stops (`<a><b>`), so elements are counted too.
private final class WellFormedness: NSObject, XMLParserDelegate {
    private var depth = 0
    private var roots = 0

    static func problem(in data: Data) -> String? {
        let checker = WellFormedness()
        let parser = XMLParser(data: data)
        parser.delegate = checker
        guard parser.parse() else { return parser.parserError?.localizedDescription ?? "cannot be parsed" }
        if checker.roots == 0 { return "there is no root element" }
        if checker.depth != 0 { return "\(checker.depth) element(s) are not closed" }
        return nil
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        if depth == 0 { roots += 1 }
        depth += 1
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        depth -= 1
    }
}
