import Testing
@testable import ESBConfig
@testable import ESBCore

@Suite struct INIDocumentTests {
    func parse(_ text: String) throws -> INIDocument { try INIDocument(parsing: text, file: "t.conf") }

    func errors(_ text: String) -> [String] {
        do {
            _ = try parse(text)
            return []
        } catch let error as ConfigError {
            return error.diagnostics.map(\.description)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    @Test func commentsAtLineStartAndAfterWhitespaceAreDropped() throws {
        let document = try parse("""
            # comment
            ; another
            [main]   # trailing comment
            name = server1   ; inline
            url = http://x/#frag
            semi = a;b
            empty = # only a comment
            """)
        let main = try #require(document.section("main"))
        #expect(main.entry("name")?.value == "server1")
        #expect(main.entry("url")?.value == "http://x/#frag")
        #expect(main.entry("semi")?.value == "a;b")
        #expect(main.entry("empty")?.value == "")
        #expect(main.entry("name")?.line == 4)
    }

    @Test func valuesAreNeverSplitOnCommas() throws {
        let document = try parse("[s]\nsvc = {\"a\": 1, \"b\": [1, 2, 3]}\n")
        #expect(document.section("s")?.entry("svc")?.value == #"{"a": 1, "b": [1, 2, 3]}"#)
    }

    @Test func doubleQuotesKeepSpacesHashesAndSemicolons() throws {
        let document = try parse(#"""
            [s]
            a = "  padded  "   # comment after the quote
            b = "x # y ; z"
            c = "say \"hi\" \\ done"
            """#)
        let section = try #require(document.section("s"))
        #expect(section.entry("a")?.value == "  padded  ")
        #expect(section.entry("b")?.value == "x # y ; z")
        #expect(section.entry("c")?.value == #"say "hi" \ done"#)
    }

    @Test func crlfAndByteOrderMarkAreAccepted() throws {
        let document = try parse("\u{FEFF}[main]\r\nname = a\r\n")
        #expect(document.section("main")?.entry("name")?.value == "a")
    }

    @Test func syntaxErrorsNameFileAndLine() {
        #expect(errors("[main\n") == ["t.conf:1: error: section header '[main' has no closing ']'"])
        #expect(errors("key = 1\n") == ["t.conf:1: error: key 'key' appears before any [section]"])
        #expect(errors("[a]\njust words\n") == ["t.conf:2: error: expected 'key = value' or '[section]', found 'just words'"])
        #expect(errors("[a]\nk = \"open\n") == ["t.conf:2: error: key 'k': the quoted value has no closing '\"'"])
        #expect(errors("[a]\nk = \"x\" y\n") == ["t.conf:2: error: key 'k': unexpected text 'y' after the closing quote"])
        #expect(errors("[a]\nk = 1\nk = 2\n") == ["t.conf:3: error: key 'k' appears twice in [a]; first at line 2"])
        #expect(errors("[a]\n[a]\n") == ["t.conf:2: error: section [a] appears again; first at line 1"])
        #expect(errors("[a]\n = 1\n") == ["t.conf:2: error: missing key before '='"])
    }

    @Test func everySyntaxErrorIsReportedNotJustTheFirst() {
        #expect(errors("[a\nx\n[b]\ny\n").count == 3)
    }
}
