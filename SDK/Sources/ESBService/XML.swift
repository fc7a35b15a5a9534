import Foundation
#if canImport(FoundationXML)
// Foundation's own XML (XMLParser, XMLDocument, XMLElement) comes with `import ESBService`:
// services need no other import and the SDK depends on no other package.
@_exported import FoundationXML
#endif

extension ServiceRequest {
    /// The payload parsed as an XML document. Documents that declare entities or refer to an
    /// external DTD are refused (no external entities, no entity expansion).
    /// - Throws: ``ServiceError`` `request.invalid_xml` with the reason.
    public func xml() throws -> XMLDocument {
        try XMLPayload.document(payload, what: "the request payload")
    }
}

extension OutgoingHTTPResponse {
    /// The body parsed as an XML document, refused as ``ServiceRequest/xml()`` refuses.
    /// - Throws: ``ServiceError`` `request.invalid_xml` with the reason.
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
        if let problem = XMLSafety.problem(in: data) ?? WellFormedness.problem(in: data) {
            throw ServiceError(.invalidXML, "\(what) is not accepted as XML: \(problem)")
        }
        do {
            return try XMLDocument(data: data, options: [.nodeLoadExternalEntitiesNever])
        } catch {
            throw ServiceError(.invalidXML, "\(what) is not well-formed XML: \(error.localizedDescription)")
        }
    }
}

/// The refusal of entity declarations and external DTDs (XXE, entity expansion bombs),
/// checked on the decoded text: a UTF-16 or UTF-32 document is decoded first, and an
/// encoding that could hide markup from a byte-level look (UTF-7, EBCDIC…) is refused.
enum XMLSafety {
    /// ASCII-compatible encodings: markup is the same bytes as in ASCII, so the text read as
    /// Latin-1 shows every declaration.
    private static let asciiCompatible: Set<String> = [
        "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "iso-latin-1", "iso-8859-2", "iso-8859-3",
        "iso-8859-4", "iso-8859-5", "iso-8859-6", "iso-8859-7", "iso-8859-8", "iso-8859-9", "iso-8859-10",
        "iso-8859-13", "iso-8859-14", "iso-8859-15", "iso-8859-16", "windows-1250", "windows-1251",
        "windows-1252", "windows-1253", "windows-1254", "windows-1255", "windows-1256", "windows-1257",
        "windows-1258", "cp1252", "koi8-r", "koi8-u",
    ]

    static func problem(in data: Data) -> String? {
        let text: String
        switch decode(data) {
        case .success(let decoded): text = decoded
        case .failure(let reason): return reason.message
        }
        return declarationProblem(text)
    }

    struct Refusal: Error { var message: String }

    /// The document's text, by its byte-order mark, its first bytes or its declared encoding.
    static func decode(_ data: Data) -> Result<String, Refusal> {
        let bytes = [UInt8](data.prefix(4))
        func starts(_ prefix: [UInt8]) -> Bool { bytes.starts(with: prefix) }
        let wide: String.Encoding? =
            if starts([0x00, 0x00, 0xFE, 0xFF]) || starts([0x00, 0x00, 0x00, 0x3C]) { .utf32BigEndian }
            else if starts([0xFF, 0xFE, 0x00, 0x00]) || starts([0x3C, 0x00, 0x00, 0x00]) { .utf32LittleEndian }
            else if starts([0xFE, 0xFF]) || starts([0x00, 0x3C]) { .utf16BigEndian }
            else if starts([0xFF, 0xFE]) || starts([0x3C, 0x00]) { .utf16LittleEndian }
            else { nil }
        if let wide {
            guard let text = String(data: data, encoding: wide) else {
                return .failure(Refusal(message: "its text is not valid \(wide)"))
            }
            return .success(text)
        }
        if starts([0x4C, 0x6F, 0xA7, 0x94]) { return .failure(Refusal(message: "EBCDIC documents are not accepted")) }
        if let declared = declaredEncoding(latin1(data.prefix(1024))), !asciiCompatible.contains(declared.lowercased()) {
            return .failure(Refusal(message: "the encoding '\(declared)' is not accepted (use UTF-8 or UTF-16)"))
        }
        // Markup is ASCII in every accepted encoding: reading each byte as one character shows it all.
        return .success(latin1(data))
    }

    /// Each byte as the character with that code (ISO 8859-1), which never fails.
    static func latin1(_ bytes: some Collection<UInt8>) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: bytes.map { Unicode.Scalar($0) })
        return String(scalars)
    }

    /// `encoding="…"` of the XML declaration, if the text starts with one.
    static func declaredEncoding(_ text: String) -> String? {
        var start = text[...]
        if start.hasPrefix("\u{FEFF}") { start = start.dropFirst() }
        if start.hasPrefix("\u{EF}\u{BB}\u{BF}") { start = start.dropFirst(3) }
        guard start.hasPrefix("<?xml"), let end = start.range(of: "?>") else { return nil }
        let declaration = start[..<end.lowerBound]
        guard let key = declaration.range(of: "encoding") else { return nil }
        var rest = declaration[key.upperBound...].drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard rest.first == "=" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return nil }
        rest = rest.dropFirst()
        guard let close = rest.firstIndex(of: quote) else { return nil }
        return String(rest[..<close])
    }

    /// Refuses a DOCTYPE with an external identifier (SYSTEM or PUBLIC) and any entity declaration.
    static func declarationProblem(_ text: String) -> String? {
        guard var doctype = text.range(of: "<!DOCTYPE", options: .caseInsensitive) else { return nil }
        if text.range(of: "<!ENTITY", options: .caseInsensitive) != nil {
            return "it declares entities (a DOCTYPE with <!ENTITY), which are refused"
        }
        // Every DOCTYPE, not just the first: one inside a comment could hide the real one.
        while true {
            // The declaration's head, up to its internal subset or its end.
            let head = text[doctype.upperBound...].prefix { $0 != "[" && $0 != ">" }
            let words = head.split(whereSeparator: { $0.isWhitespace }).map { $0.uppercased() }
            if words.contains(where: { $0.hasPrefix("SYSTEM") || $0.hasPrefix("PUBLIC") }) {
                return "it refers to an external DTD (DOCTYPE … SYSTEM/PUBLIC), which is refused"
            }
            guard let next = text.range(of: "<!DOCTYPE", options: .caseInsensitive, range: doctype.upperBound..<text.endIndex) else {
                return nil
            }
            doctype = next
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
        parser.shouldResolveExternalEntities = false
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
