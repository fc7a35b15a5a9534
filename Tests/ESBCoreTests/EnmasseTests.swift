@testable import ESBConfig
import ESBStore
@testable import ESBCore
import Foundation
import Testing

/// enmasse files (parse, render) and the all-or-nothing import, on a real SQLite file.
@Suite struct EnmasseTests {
    func store() throws -> ObjectStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-enmasse-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SecretBox.createKeyFile(at: directory + "/secret.key")
        return ObjectStore(odb: try ODB(path: directory + "/esb.db"), secrets: try SecretBox(keyFile: directory + "/secret.key"),
                           kinds: ObjectKinds.all)
    }

    static let sample = """
        # references may point forward in the file: import applies in dependency order
        outconn_amqp:
          - name: crm.orders
            def: broker
            priority: 7
        def_amqp:
          - name: broker
            host: 127.0.0.1
            username: guest
            password: s3cret
        channel_plain_http:
          - name: orders
            url_path: /orders/{id}
            service: orders.get
            security: api
        def_sec:
          - name: api
            username: "true"
            realm: ""
        """

    @Test func importsInDependencyOrderAndExportsStablyInBothFormats() async throws {
        let store = try store()
        let items = try EnmasseFile.parse(Self.sample, name: "sample.yaml", kinds: ObjectKinds.all)
        #expect(items.first?.location == "sample.yaml:3")
        let outcome = try await store.importAll(items, replace: false)
        // Kinds by name, each after what it refers to: channel_amqp pulls def_amqp first.
        #expect(outcome.created == ["def_amqp 'broker'", "def_sec 'api'", "channel_plain_http 'orders'", "outconn_amqp 'crm.orders'"])
        #expect(try await store.secret(ObjectKinds.amqpDefinition, "broker") == "s3cret")

        for format in EnmasseFile.Format.allCases {
            let exported = EnmasseFile.render(try await store.exportAll(includeSecrets: true), format: format)
            let fresh = try self.store()
            _ = try await fresh.importAll(try EnmasseFile.parse(exported, name: "export", kinds: ObjectKinds.all), replace: false)
            let again = EnmasseFile.render(try await fresh.exportAll(includeSecrets: true), format: format)
            #expect(again == exported, "export → fresh ODB → import → export is identical (\(format))")
            #expect(exported.contains("s3cret"))
        }
        let yaml = EnmasseFile.render(try await store.exportAll(includeSecrets: false), format: .yaml)
        #expect(!yaml.contains("s3cret") && !yaml.contains("password"), "secrets only when asked")
        #expect(yaml.contains("username: \"true\"") && yaml.contains("realm: \"\""), "strings that would read as other types are quoted")
        #expect(yaml.firstRange(of: "def_sec:")!.lowerBound < yaml.firstRange(of: "channel_plain_http:")!.lowerBound)
        #expect(yaml.firstRange(of: "def_amqp:")!.lowerBound < yaml.firstRange(of: "outconn_amqp:")!.lowerBound)
    }

    @Test func aFileWithOneBadReferenceChangesNothingAndNamesIt() async throws {
        let store = try store()
        let bad = Self.sample.replacingOccurrences(of: "def: broker", with: "def: nowhere")
        let items = try EnmasseFile.parse(bad, name: "bad.yaml", kinds: ObjectKinds.all)
        let error = await #expect(throws: ImportError.self) { try await store.importAll(items, replace: false) }
        #expect(error?.problems.count == 1)
        #expect(error?.problems.first?.location == "bad.yaml:3")
        #expect(error?.problems.first?.field == "def")
        #expect(error?.description.contains("bad.yaml:3: outgoing AMQP connection 'crm.orders': def refers to 'nowhere', which does not exist") == true,
                "\(error?.description ?? "")")
        for kind in ObjectKinds.all { #expect(try await store.list(kind).isEmpty, "nothing of \(kind.name) was applied") }
    }

    @Test func existingNamesNeedReplaceWhichEditsInPlace() async throws {
        let store = try store()
        _ = try await store.importAll(try EnmasseFile.parse(Self.sample, name: "a.yaml", kinds: ObjectKinds.all), replace: false)
        let change = """
            outconn_amqp:
              - name: crm.orders
                def: broker
                priority: 2
            """
        let items = try EnmasseFile.parse(change, name: "b.yaml", kinds: ObjectKinds.all)
        let error = await #expect(throws: ImportError.self) { try await store.importAll(items, replace: false) }
        #expect(error?.description.contains("b.yaml:2: outconn_amqp 'crm.orders' already exists in the ODB") == true, "\(error?.description ?? "")")
        let outcome = try await store.importAll(items, replace: true)
        #expect(outcome.updated == ["outconn_amqp 'crm.orders'"] && outcome.created.isEmpty)
        #expect(try await store.get(ObjectKinds.amqpOutconn, "crm.orders")["priority"] == .int(2))
        #expect(try await store.secret(ObjectKinds.amqpDefinition, "broker") == "s3cret", "a replace without a password keeps it")
    }

    @Test func everyProblemIsReportedWithItsLine() throws {
        let text = """
            def_sec:
              - name: a
                username: u
              - name: a
                username: v
            def_amqp:
              - name: b
                host: h
                port: 56.72
                username: u
                tls: {x: 1}
            queues:
              - name: q
            """
        let error = #expect(throws: ImportError.self) { try EnmasseFile.parse(text, name: "f.yaml", kinds: ObjectKinds.all) }
        let lines = error?.problems.map(\.description) ?? []
        #expect(lines.contains("f.yaml:9: def_amqp 'b': port = 56.72 must be a whole number"), "\(lines)")
        #expect(lines.contains("f.yaml:11: def_amqp 'b': tls must be a string, integer, boolean or null, not a list or mapping"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("f.yaml:12: unknown object list 'queues'") }, "\(lines)")

        let syntax = #expect(throws: ImportError.self) { try EnmasseFile.parse("def_sec:\n  - name: [\n", name: "s.yaml", kinds: ObjectKinds.all) }
        #expect(syntax?.problems.first?.location.hasPrefix("s.yaml:") == true)
        #expect(syntax?.description.contains("not valid YAML or JSON") == true)
    }

    @Test func duplicatesInsideTheFileAreNamed() async throws {
        let store = try store()
        let items = try EnmasseFile.parse("def_sec:\n  - name: a\n    username: u\n  - name: a\n    username: v\n", name: "d.yaml",
                                          kinds: ObjectKinds.all)
        let error = await #expect(throws: ImportError.self) { try await store.importAll(items, replace: false) }
        #expect(error?.description.contains("d.yaml:4: duplicate name: def_sec 'a' is already defined at d.yaml:2") == true,
                "\(error?.description ?? "")")
    }

    @Test func jsonFilesParseToo() throws {
        let items = try EnmasseFile.parse(#"{"def_sec": [{"name": "a", "username": "5672", "is_active": false, "realm": null}]}"#,
                                          name: "j.json", kinds: ObjectKinds.all)
        #expect(items.first?.fields == ["name": .string("a"), "username": .string("5672"), "is_active": .bool(false), "realm": .null])
    }
}
