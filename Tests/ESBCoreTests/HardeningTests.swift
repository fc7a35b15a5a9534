import ESBService
import Foundation
import Testing
@testable import ESBConfig
@testable import ESBCore

/// The pure pieces behind the security rules, without a server: secrets compared, logs escaped, YAML
/// pre-scanned, file modes checked, retries bounded, crashes attributed, XML refused.
@Suite struct HardeningTests {
    @Test func secretDigestsMatchOnlyTheSecretWhateverTheLengths() {
        let digest = SecretDigest("pw")
        #expect(digest.matches("pw"))
        for candidate in ["", "p", "pw ", "PW", "pw" + String(repeating: "\u{0}", count: 256), "x"] {
            #expect(!digest.matches(candidate), "\(candidate.debugDescription)")
        }
        let credentials = AdminCredentials(username: "admin", password: "s3cret")
        #expect(credentials.matches(username: "admin", password: "s3cret"))
        #expect(!credentials.matches(username: "admin", password: "s3cret" + String(repeating: "\u{0}", count: 256)))
        #expect(!credentials.matches(username: "admi", password: "s3cret"))
    }

    @Test func textLogLinesEscapeControlCharacters() {
        let line = StderrLogHandler.text(level: .warning, label: "esbd", message: "a\nb\r\u{1b}[2J\u{85}c",
                                         metadata: ["esb.x": "1\n2", "k\n": "v"])
        #expect(!line.contains("\n") && !line.contains("\r") && !line.contains("\u{1b}") && !line.contains("\u{85}"))
        #expect(line.contains(#"a\nb\r\u{1b}[2J\u{85}c"#))
        #expect(line.contains(#"esb.x=1\n2"#) && line.contains(#"k\n=v"#))
        #expect(StderrLogHandler.escapingControlCharacters("plain ünïcode") == "plain ünïcode")
        // A value cannot pose as another field, and a literal backslash-n is not a newline's escape.
        let posing = StderrLogHandler.text(level: .warning, label: "esbd", message: #"a\nb"#,
                                           metadata: ["esb.user": "x esb.client=203.0.113.9", "esb.q": "say \"hi\""])
        #expect(posing.contains(#"esb.user="x esb.client=203.0.113.9""#), "\(posing)")
        #expect(posing.contains(#"esb.q="say \"hi\"""#), "\(posing)")
        #expect(posing.contains(#"a\\nb"#), "\(posing)")
    }

    @Test func enmassePreScanRefusesAnchorsAliasesAndDeepNesting() {
        func problem(_ text: String) -> String? { EnmasseFile.structureProblem(text, name: "f")?.message }
        #expect(problem("a: &x [1]\n")?.contains("anchors and aliases") == true)
        #expect(problem("a: [*x]\n")?.contains("anchors and aliases") == true)
        #expect(problem("def_sec:\n  - &one\n    name: a\n")?.contains("anchors and aliases") == true)
        #expect(problem("a: !!str &x v\n")?.contains("anchors and aliases") == true)
        // What a stateful scan could be led past: CR-only line breaks, flow pairs without a
        // space, a quoted string over two lines.
        #expect(problem("#x\ra: *b\r")?.contains("anchors and aliases") == true)
        #expect(problem("{\"k\":*a}")?.contains("anchors and aliases") == true)
        #expect(problem("k: [\"a\n\", *b]")?.contains("anchors and aliases") == true)
        #expect(problem("k: [\"a #\", *b]")?.contains("anchors and aliases") == true)
        #expect(problem("k: " + String(repeating: "[", count: 65))?.contains("nested deeper") == true)
        #expect(problem(String(repeating: "- ", count: 65) + "x")?.contains("nested deeper") == true)
        #expect(problem(String(repeating: " ", count: 300) + "x: 1")?.contains("nested deeper") == true)
        // Ordinary files, with stars, ampersands and brackets in values, quotes and comments, pass.
        for text in [
            "def_sec:\n  - name: a&b\n    username: \"*x \\\" & z\"\n    realm: 'it''s & more'\n",
            "channel_plain_http:\n  - name: c\n    url_path: /a/{id}\n    service: s # not * an & alias\n",
            "scheduler:\n  - name: j\n    cron_definition: '*/5 * * * *'\n    extra: a * b & c\n",
            "{\"def_sec\": [{\"name\": \"a\", \"username\": \"u\"}]}",
        ] {
            #expect(problem(text) == nil, "\(text)")
        }
    }

    @Test func enmasseImportOfABillionLaughsIsRefusedNotExpanded() throws {
        let laughs = """
            a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
            b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            def_sec: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            """
        #expect(throws: ImportError.self) { try EnmasseFile.parse(laughs, name: "f", kinds: ObjectKinds.all) }
    }

    @Test func lenientFileModesAreErrorsNamingFileAndMode() throws {
        let directory = NSTemporaryDirectory() + "esb-modes-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory + "/pickup", withIntermediateDirectories: true)
        for file in ["secret.key", "admin.password", "redis.password"] {
            #expect(FileManager.default.createFile(atPath: directory + "/" + file, contents: Data("x".utf8)))
            chmod(directory + "/" + file, 0o600)
        }
        let text = "[kvdb]\npassword_file = ./redis.password\n"
        var config = try ServerConfig.parse(text, path: directory + "/server.conf").config
        #expect(config.fileModeProblems().isEmpty)
        try config.readSecretFiles()
        #expect(config.kvdb?.password?.value == "x")

        chmod(directory + "/admin.password", 0o640)
        #expect(config.fileModeProblems().isEmpty, "group read is fine")
        chmod(directory + "/admin.password", 0o644)
        chmod(directory + "/redis.password", 0o620)
        chmod(directory + "/pickup", 0o777)
        let problems = config.fileModeProblems().map(\.message)
        #expect(problems.contains { $0.contains("[admin] password_file") && $0.contains("0644") && $0.contains("readable by others") })
        #expect(problems.contains { $0.contains("[kvdb] password_file") && $0.contains("writable by group") })
        #expect(problems.contains { $0.contains("[hot_deploy] pickup_dir") && $0.contains("writable by others") })
        #expect(problems.count == 3)
    }

    @Test func tlsKeysGoTogetherAndNewKeysAreRead() throws {
        #expect(throws: ConfigError.self) { try ServerConfig.parse("[main]\ntls_cert_path = c.pem\n", path: "/etc/esb/server.conf") }
        let config = try ServerConfig.parse("""
            [main]
            tls_cert_path = c.pem
            tls_key_path = k.pem
            max_body_bytes = 10
            idle_timeout_seconds = 5
            trusted_proxies = 10.0.0.1 10.0.0.2
            [hot_deploy]
            compile_timeout_seconds = 7
            max_source_bytes = 99
            """, path: "/etc/esb/server.conf").config
        #expect(config.main.usesTLS && config.main.tlsKeyPath == "/etc/esb/k.pem")
        #expect(config.main.maxBodyBytes == 10 && config.main.idleTimeoutSeconds == 5)
        #expect(config.main.trustedProxies == ["10.0.0.1", "10.0.0.2"])
        #expect(config.hotDeploy.compileTimeoutSeconds == 7 && config.hotDeploy.maxSourceBytes == 99)
    }

    @Test func invokeRetryNumbersAreCheckedAndDelaysNeverOverflow() {
        func request(repeats: Int = 1, interval: Duration = .seconds(1), backoff: Double = 1, maxInterval: Duration? = nil) -> InvokeRetryRequest {
            InvokeRetryRequest(target: "t", payload: Data(), repeats: repeats, interval: interval, backoff: backoff,
                               maxInterval: maxInterval, mode: .blocking)
        }
        for bad in [request(repeats: .max), request(repeats: -1), request(interval: .seconds(-1)), request(interval: .seconds(1e12)),
                    request(backoff: .nan), request(backoff: .infinity), request(backoff: 0.5), request(maxInterval: .seconds(-5))] {
            #expect(throws: ServiceError.self) { try RetryPolicy.check(bad) }
            do { try RetryPolicy.check(bad) } catch let error as ServiceError { #expect(error.code == .argumentInvalid) } catch {}
        }
        let policy = RetryPolicy(repeats: 1_000_000, interval: .seconds(30 * 86_400), backoff: 1000)
        #expect(policy.baseDelay(beforeRetry: 1_000_000) == RetryPolicy.longestInterval)
        #expect(RetryPolicy(repeats: 5, interval: .milliseconds(10), backoff: 2).baseDelay(beforeRetry: 3) == .milliseconds(40))
    }

    @Test func crashesCountOnlyForUnitsWithACallInFlight() async throws {
        let directory = NSTemporaryDirectory() + "esb-ledger-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let first = try InFlightLedger(directory: directory)
        #expect(first.previousRun.isEmpty)
        await first.tracking("done.swift") {}
        // A call that never finishes, as at a kill: the mapped counter stays at one.
        let (started, start) = AsyncStream<Void>.makeStream()
        let (release, releasing) = AsyncStream<Void>.makeStream()
        let stuck = Task {
            await first.tracking("stuck.swift") {
                start.yield()
                for await _ in release {}
            }
        }
        for await _ in started { break }
        let second = try InFlightLedger(directory: directory)
        #expect(second.previousRun == ["stuck.swift"])
        releasing.finish()
        await stuck.value
        let third = try InFlightLedger(directory: directory)
        #expect(third.previousRun.isEmpty, "the second ledger started from zero")
    }

    @Test func xmlWithEntitiesOrAnExternalDTDIsRefusedInAnyEncoding() {
        func refused(_ data: Data) -> Bool {
            do {
                _ = try ServiceRequest(payload: data).xml()
                return false
            } catch let error as ServiceError {
                return error.code == .invalidXML
            } catch {
                return false
            }
        }
        let external = #"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#
        #expect(refused(Data(external.utf8)))
        #expect(refused(Data(#"<!doctype r SYSTEM "http://example.com/r.dtd"><r/>"#.utf8)))
        #expect(refused(Data(#"<!DOCTYPE r PUBLIC "-//X//Y" "r.dtd"><r/>"#.utf8)))
        #expect(refused(Data([0xFE, 0xFF]) + external.data(using: .utf16BigEndian)!))
        #expect(refused(external.data(using: .utf16LittleEndian)!), "UTF-16 without a byte-order mark")
        #expect(refused(Data([0xEF, 0xBB, 0xBF]) + Data(external.utf8)))
        #expect(refused(Data(#"<?xml version="1.0" encoding="UTF-7"?><r/>"#.utf8)))
        #expect(refused(Data(#"<!--<!DOCTYPE x>--><!DOCTYPE a SYSTEM "http://evil.example/x.dtd"><a/>"#.utf8)), "a decoy first DOCTYPE")
        #expect(!refused(Data(#"<?xml version="1.0" encoding="ISO-8859-1"?><!DOCTYPE r><r>caf\#u{E9}</r>"#.utf8)))
        #expect(!refused(Data("<r><![CDATA[<!ENTITY is only text here>]]></r>".utf8)))
    }
}
