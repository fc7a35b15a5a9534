import ESBCore
import Foundation
import Testing

/// The JSON channel check: RFC 8259, compared with Foundation's parser.
@Suite struct JSONSyntaxTests {
    static let valid = [
        #"{"order": 42, "lines": [1, 2, 3]}"#, "[]", "{}", " [ ] ", "0", "-0", "-0.5e+10", "1E3", "3.25",
        #""text""#, "true", "false", "null", #"{"a":{"b":[{"c":null}]}}"#, #""\u00e9\n\t\"\\\/""#,
        #""\ud83d\ude00""#, "\"żółw 🐢\"", "\u{FEFF}{\"bom\": true}", "\n\t\r {\"x\" : [ true , false ] }\n",
        String(repeating: "[", count: 512) + String(repeating: "]", count: 512),
    ]
    static let invalid = [
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{a:1}", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "+1",
        "tru", "nul", "True", "'x'", "\"unterminated", "\"tab\there\"", #""\x""#, #""\u12""#, #""\ud800""#, #""\udc00x""#,
        "[1 2]", "{\"a\":1 \"b\":2}", "1 2", "[]]", "NaN", "Infinity", "[1]x",
        String(repeating: "[", count: 513) + String(repeating: "]", count: 513),
    ]

    static func foundationAccepts(_ data: Data) -> Bool {
        (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
    }

    @Test func acceptsJSONAndRefusesTheRestWithAnOffset() {
        for text in Self.valid {
            #expect(JSONSyntax.problem(in: Data(text.utf8)) == nil, "\(text)")
        }
        for text in Self.invalid {
            let problem = JSONSyntax.problem(in: Data(text.utf8))
            #expect(problem?.contains("at byte") == true, "\(text): \(problem ?? "accepted")")
        }
        #expect(JSONSyntax.problem(in: Data([0x22, 0xC3, 0x28, 0x22])) != nil, "invalid UTF-8 in a string")
        #expect(JSONSyntax.problem(in: Data([0x22, 0xED, 0xA0, 0x80, 0x22])) != nil, "an encoded surrogate")
        #expect(JSONSyntax.problem(in: Data("[1,]".utf8)) == "expected a JSON value at byte 3")
        #expect(JSONSyntax.problem(in: Data("[1E737]".utf8)) == nil, "RFC 8259 sets no range for numbers")
    }

    /// 20,000 mutations of JSON documents: the check and Foundation agree, except where
    /// Foundation departs from RFC 8259: it accepts a trailing comma (`[1, 2, ]`), which is
    /// not JSON, and refuses numbers beyond Double's range (`1E737`), which are.
    @Test func agreesWithFoundationOnMutatedDocuments() {
        var generator = SystemRandomNumberGenerator()
        let seeds = Self.valid.filter { $0.count < 200 }.map { Array($0.utf8) }
        let alphabet = Array(#"{}[]":,.-+eE0123456789 tfnrulase\u"#.utf8) + [0x0A, 0xC3, 0xA9, 0x80]
        var disagreements: [String] = []
        for _ in 0..<20_000 {
            var bytes = seeds.randomElement(using: &generator)!
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0...bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0 where position < bytes.count: bytes.remove(at: position)
                case 1 where position < bytes.count: bytes[position] = alphabet.randomElement(using: &generator)!
                default: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                }
            }
            let data = Data(bytes)
            let ours = JSONSyntax.problem(in: data) == nil
            let foundation = Self.foundationAccepts(data)
            let text = String(decoding: bytes, as: UTF8.self)
            if ours == foundation { continue }
            if foundation && text.contains(/,\s*[\]}]/) { continue }
            if ours && text.matches(of: /-?[0-9.]+[eE][+-]?[0-9]+/).contains(where: { Double($0.output)?.isInfinite == true }) { continue }
            disagreements.append(text)
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
    }
}
