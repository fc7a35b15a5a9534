/// A parsed INI file: sections in file order, each with its entries in file order.
///
/// Syntax: `[section]`, `key = value`; a comment starts with `#` or `;`
/// at the start of a line, or after whitespace that follows a value or a section header.
/// Values are strings, never split on commas. A double-quoted value keeps leading and
/// trailing spaces, `#` and `;`; inside quotes `\"` and `\\` escape.
public struct INIDocument: Sendable, Equatable {
    /// One `key = value` line.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
        public var line: Int
    }

    /// One `[name]` section.
    public struct Section: Sendable, Equatable {
        public var name: String
        public var line: Int
        public var entries: [Entry]

        /// The entry for `key`, if present.
        public func entry(_ key: String) -> Entry? { entries.first { $0.key == key } }
    }

    /// The sections in file order.
    public var sections: [Section]

    /// The section called `name`, if present.
    public func section(_ name: String) -> Section? { sections.first { $0.name == name } }

    /// Parses INI text; `file` is used only to name the place of an error.
    /// - Throws: ``ConfigError`` listing every syntax error with file and line.
    public init(parsing text: String, file: String) throws(ConfigError) {
        var sections: [Section] = []
        var problems: [ConfigDiagnostic] = []
        var lineNumber = 0
        // "\r\n" is a single Character in Swift: normalise before splitting into lines.
        var body = Substring(text.replacingOccurrences(of: "\r\n", with: "\n"))
        if body.hasPrefix("\u{FEFF}") { body = body.dropFirst() }

        for rawLine in body.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let trimmed = rawLine.drop { $0 == " " || $0 == "\t" }
            guard let first = trimmed.first, first != "#", first != ";" else { continue }

            func fail(_ message: String) {
                problems.append(.init(.error, file: file, line: lineNumber, message))
            }

            if first == "[" {
                guard let close = trimmed.firstIndex(of: "]") else {
                    fail("section header '\(trimmed)' has no closing ']'")
                    continue
                }
                let name = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
                    .trimmingSpaces()
                let rest = trimmed[trimmed.index(after: close)...]
                if !Self.isBlankOrComment(rest) {
                    fail("unexpected text '\(rest.trimmingSpaces())' after section header [\(name)]")
                    continue
                }
                if name.isEmpty {
                    fail("empty section name '[]'")
                    continue
                }
                if let earlier = sections.first(where: { $0.name == name }) {
                    fail("section [\(name)] appears again; first at line \(earlier.line)")
                    continue
                }
                sections.append(Section(name: String(name), line: lineNumber, entries: []))
                continue
            }

            guard let equals = trimmed.firstIndex(of: "=") else {
                fail("expected 'key = value' or '[section]', found '\(trimmed.trimmingSpaces())'")
                continue
            }
            let key = trimmed[..<equals].trimmingSpaces()
            guard !key.isEmpty else {
                fail("missing key before '='")
                continue
            }
            guard !sections.isEmpty else {
                fail("key '\(key)' appears before any [section]")
                continue
            }
            let value: String
            switch Self.parseValue(trimmed[trimmed.index(after: equals)...]) {
            case .success(let parsed): value = parsed
            case .failure(let reason):
                fail("key '\(key)': \(reason.text)")
                continue
            }
            let index = sections.count - 1
            if let earlier = sections[index].entry(String(key)) {
                fail("key '\(key)' appears twice in [\(sections[index].name)]; first at line \(earlier.line)")
                continue
            }
            sections[index].entries.append(Entry(key: String(key), value: value, line: lineNumber))
        }
        if !problems.isEmpty { throw ConfigError(problems) }
        self.sections = sections
    }

    private struct ValueProblem: Error { var text: String }

    private static func parseValue(_ raw: Substring) -> Result<String, ValueProblem> {
        let value = raw.drop { $0 == " " || $0 == "\t" }
        if value.first == "\"" {
            var result = ""
            var index = value.index(after: value.startIndex)
            while index < value.endIndex {
                let character = value[index]
                if character == "\\" {
                    let next = value.index(after: index)
                    if next < value.endIndex, value[next] == "\"" || value[next] == "\\" {
                        result.append(value[next])
                        index = value.index(after: next)
                        continue
                    }
                    result.append(character)
                } else if character == "\"" {
                    let rest = value[value.index(after: index)...]
                    guard isBlankOrComment(rest) else {
                        return .failure(.init(text: "unexpected text '\(rest.trimmingSpaces())' after the closing quote"))
                    }
                    return .success(result)
                } else {
                    result.append(character)
                }
                index = value.index(after: index)
            }
            return .failure(.init(text: "the quoted value has no closing '\"'"))
        }
        // An inline comment starts at '#' or ';' that begins the value or follows whitespace.
        var end = value.endIndex
        var previousWasSpace = true
        for index in value.indices {
            let character = value[index]
            if (character == "#" || character == ";") && previousWasSpace {
                end = index
                break
            }
            previousWasSpace = character == " " || character == "\t"
        }
        return .success(String(value[..<end].trimmingSpaces()))
    }

    private static func isBlankOrComment(_ text: Substring) -> Bool {
        let rest = text.drop { $0 == " " || $0 == "\t" }
        guard let first = rest.first else { return true }
        // A comment must be separated from what precedes it by whitespace.
        return (first == "#" || first == ";") && rest.startIndex != text.startIndex
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var result = self.drop { $0 == " " || $0 == "\t" }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
