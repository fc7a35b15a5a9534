@testable import ESBConfig
@testable import ESBCore
import Foundation
import Testing

/// R12: random and mutated server.conf and enmasse files never crash or hang the parsers;
/// each gives a clear error or a valid result. A mutation harness over real seed files
/// (deterministic: a fixed-seed generator, so a failure can be replayed).
@Suite(.timeLimit(.minutes(5))) struct ParserFuzzTests {
    /// SplitMix64: small, fast, reproducible.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let fragments = ["[", "]", "=", "\n", ";", "#", "\"", "'", "file://", "0", "-1", "99999999999999999999", "true",
                            "{", "}", ":", "- ", "  ", "\t", "\u{0}", "é", "\u{202E}", "%", "\\", "null", "~", "&a", "*a", "!!int",
                            "[main]", "[kvdb]", "[startup_services]", "port = ", "name: ", "def: ", "password: "]

    /// One mutation of `text`: flip bytes, insert fragments, delete, duplicate or shuffle lines.
    static func mutate(_ text: String, _ random: inout Generator) -> String {
        var bytes = Array(text.utf8)
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            switch Int.random(in: 0..<6, using: &random) {
            case 0 where !bytes.isEmpty:
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            case 1:
                let fragment = Array(fragments.randomElement(using: &random)!.utf8)
                bytes.insert(contentsOf: fragment, at: Int.random(in: 0...bytes.count, using: &random))
            case 2 where bytes.count > 2:
                let start = Int.random(in: 0..<bytes.count, using: &random)
                bytes.removeSubrange(start..<min(bytes.count, start + Int.random(in: 1...20, using: &random)))
            case 3:
                var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                if let line = lines.randomElement(using: &random) { lines.insert(line, at: Int.random(in: 0...lines.count, using: &random)) }
                bytes = Array(lines.joined(separator: "\n").utf8)
            case 4:
                var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                lines.shuffle(using: &random)
                bytes = Array(lines.joined(separator: "\n").utf8)
            default:
                bytes = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...127, using: &random) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    @Test func tenThousandMutatedServerConfsGiveAValidConfigOrAClearError() throws {
        let seed = try String(contentsOfFile: Self.packageRoot + "/server.conf.example", encoding: .utf8)
        var random = Generator(state: 12)
        var valid = 0, refused = 0
        for _ in 0..<10_000 {
            let text = Self.mutate(seed, &random)
            do {
                _ = try ServerConfig.parse(text, path: "/fuzz/server.conf")
                valid += 1
            } catch {
                #expect(error.description.contains("server.conf"), "the error names the file: \(error.description.prefix(300))")
                refused += 1
            }
        }
        print("R12 server.conf: 10000 cases, \(valid) valid, \(refused) refused with an error, 0 crashes")
        #expect(valid + refused == 10_000)
    }

    @Test func tenThousandMutatedEnmasseFilesParseOrNameTheirProblems() throws {
        let seed = try String(contentsOfFile: Self.packageRoot + "/config/samples/enmasse.yaml", encoding: .utf8) + """
            def_sec:
            - name: partner
              username: acme
              password: s3cret
            def_amqp:
            - name: broker
              host: 127.0.0.1
              port: 5672
              username: guest
            outconn_amqp:
            - name: out
              def: broker
              priority: 7
            """
        var random = Generator(state: 34)
        var parsed = 0, refused = 0
        for _ in 0..<10_000 {
            do {
                _ = try EnmasseFile.parse(Self.mutate(seed, &random), name: "fuzz.yaml", kinds: ObjectKinds.all)
                parsed += 1
            } catch {
                #expect(error.problems.allSatisfy { $0.location.hasPrefix("fuzz.yaml") }, "every problem has a location")
                refused += 1
            }
        }
        print("R12 enmasse: 10000 cases, \(parsed) parsed, \(refused) refused with located problems, 0 crashes")
        #expect(parsed + refused == 10_000)
    }
}
