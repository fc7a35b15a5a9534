/// Checks that bytes are one well-formed JSON text (RFC 8259, UTF-8, any value at the top)
/// without building it: what a `data_format = json` channel needs before it hands the body
/// to a service, at a fraction of the cost of parsing it into objects.
///
/// Agrees with Foundation's parser where the RFC is loose: lone UTF-16 surrogate escapes
/// are refused, nesting deeper than 512 is refused, and a leading UTF-8 byte order mark is
/// skipped. Unlike Foundation on Linux it refuses trailing commas (`[1, 2, ]`, not JSON) and
/// accepts numbers beyond Double's range (`1E400`, JSON; the service decides their precision).
public enum JSONSyntax {
    public static let maximumDepth = 512

    /// Why `bytes` is not one JSON value (with the byte offset), or nil when it is.
    public static func problem<Bytes: Collection<UInt8>>(in bytes: Bytes) -> String? {
        if let problem = bytes.withContiguousStorageIfAvailable({ check(UnsafeRawBufferPointer($0)) }) {
            return problem
        }
        return Array(bytes).withUnsafeBytes { check($0) }
    }

    private enum Expect { case value, firstValueOrClose, firstKeyOrClose, key, colon, commaOrClose, end }

    private struct Failure: Error {
        let message: String
        let offset: Int
    }

    private static func check(_ bytes: UnsafeRawBufferPointer) -> String? {
        var scanner = Scanner(bytes: bytes)
        do {
            try scanner.run()
            return nil
        } catch {
            return "\(error.message) at byte \(error.offset)"
        }
    }

    private struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        /// Open containers: `{` or `[`.
        var stack: [UInt8] = []

        init(bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
            if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { index = 3 }
        }

        func fail(_ message: String) -> Failure { Failure(message: message, offset: index) }

        var afterValue: Expect { stack.isEmpty ? .end : .commaOrClose }

        mutating func run() throws(Failure) {
            var expect = Expect.value
            while true {
                while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
                    index += 1
                }
                guard index < bytes.count else { break }
                let byte = bytes[index]
                switch expect {
                case .end:
                    throw fail("unexpected text after the JSON value")
                case .colon:
                    guard byte == UInt8(ascii: ":") else { throw fail("expected ':' after an object key") }
                    index += 1
                    expect = .value
                case .key, .firstKeyOrClose:
                    if expect == .firstKeyOrClose && byte == UInt8(ascii: "}") {
                        index += 1
                        stack.removeLast()
                        expect = afterValue
                    } else {
                        guard byte == UInt8(ascii: "\"") else { throw fail("expected a string as object key") }
                        try string()
                        expect = .colon
                    }
                case .commaOrClose:
                    let open = stack[stack.count - 1]
                    if byte == UInt8(ascii: ",") {
                        index += 1
                        expect = open == UInt8(ascii: "{") ? .key : .value
                    } else if byte == (open == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        index += 1
                        stack.removeLast()
                        expect = afterValue
                    } else {
                        throw fail(open == UInt8(ascii: "{") ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array")
                    }
                case .value, .firstValueOrClose:
                    if expect == .firstValueOrClose && byte == UInt8(ascii: "]") {
                        index += 1
                        stack.removeLast()
                        expect = afterValue
                        continue
                    }
                    switch byte {
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        guard stack.count < JSONSyntax.maximumDepth else { throw fail("nested deeper than \(JSONSyntax.maximumDepth)") }
                        stack.append(byte)
                        index += 1
                        expect = byte == UInt8(ascii: "{") ? .firstKeyOrClose : .firstValueOrClose
                    case UInt8(ascii: "\""):
                        try string()
                        expect = afterValue
                    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        try number()
                        expect = afterValue
                    case UInt8(ascii: "t"):
                        try literal("true")
                        expect = afterValue
                    case UInt8(ascii: "f"):
                        try literal("false")
                        expect = afterValue
                    case UInt8(ascii: "n"):
                        try literal("null")
                        expect = afterValue
                    default:
                        throw fail("expected a JSON value")
                    }
                }
            }
            guard expect == .end else { throw fail("unexpected end of the JSON text") }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count,
                  (0..<count).allSatisfy({ bytes[index + $0] == word.utf8Start[$0] }) else {
                throw fail("expected '\(word)'")
            }
            index += count
        }

        mutating func digits() -> Int {
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
            return index - start
        }

        mutating func number() throws(Failure) {
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") else {
                throw fail("expected a digit")
            }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                    throw fail("a number may not have a leading zero")
                }
            } else {
                _ = digits()
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw fail("expected a digit after '.'") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw fail("expected a digit in the exponent") }
            }
        }

        mutating func hex4() throws(Failure) -> UInt16 {
            guard bytes.count - index >= 4 else { throw fail("expected four hex digits after \\u") }
            var value: UInt16 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw fail("expected four hex digits after \\u")
                }
                value = value << 4 | UInt16(digit)
                index += 1
            }
            return value
        }

        /// A string from its opening quote; escapes and UTF-8 checked.
        mutating func string() throws(Failure) {
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw fail("an unterminated string") }
                    switch bytes[index] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        let unit = try hex4()
                        if unit >= 0xDC00 && unit <= 0xDFFF { throw fail("a lone low surrogate escape") }
                        if unit >= 0xD800 && unit <= 0xDBFF {
                            guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw fail("a high surrogate escape without its low surrogate")
                            }
                            index += 2
                            let low = try hex4()
                            guard low >= 0xDC00 && low <= 0xDFFF else { throw fail("a high surrogate escape without its low surrogate") }
                        }
                    default:
                        throw fail("an invalid escape in a string")
                    }
                case 0..<0x20:
                    throw fail("a control character in a string")
                case 0..<0x80:
                    index += 1
                default:
                    try utf8Sequence(byte)
                }
            }
            throw fail("an unterminated string")
        }

        /// One multi-byte UTF-8 sequence starting with `lead` (RFC 3629: no overlongs, no surrogates).
        mutating func utf8Sequence(_ lead: UInt8) throws(Failure) {
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: throw fail("invalid UTF-8")
            }
            guard bytes.count - index >= length else { throw fail("invalid UTF-8") }
            let second = bytes[index + 1]
            guard second >= low && second <= high else { throw fail("invalid UTF-8") }
            for offset in 2..<max(2, length) where bytes[index + offset] & 0xC0 != 0x80 {
                throw fail("invalid UTF-8")
            }
            index += length
        }
    }
}
