import ESBStore
import Foundation
import Testing

/// enmasse through the built `esbd` and `esb` (reliability target R11): round trips into a fresh ODB,
/// all or nothing, `--replace`, secrets only when asked, changes applied live.
@Suite struct EnmasseIntegrationTests {
    /// Objects of every kind, referring to each other, with passwords.
    static func file(brokerPort: Int) -> String {
        """
        def_sec:
          - name: partner
            username: acme
            password: partner-secret
        channel_plain_http:
          - name: echo
            url_path: /enmasse/echo
            service: esb.helpers.echo
            data_format: text
            security: partner
        def_amqp:
          - name: broker
            host: \(AMQPPeer.host)
            port: \(brokerPort)
            username: guest
            password: guest
        outconn_amqp:
          - name: enmasse.out
            def: broker
            pool_size: 1
            priority: 3
        outconn_plain_http:
          - name: enmasse.http
            address: http://127.0.0.1:9
            url_path: /orders/{id}
            data_format: xml
            security: partner
        """
    }

    @Test func exportImportExportIsIdenticalInYAMLAndJSONAndAppliesLive() async throws {
        let source = try TestServer()
        try await source.start()
        defer { Task { await source.stop() } }
        let input = source.directory + "/objects.yaml"
        try Self.file(brokerPort: AMQPPeer.port).write(toFile: input, atomically: true, encoding: .utf8)
        let imported = try await source.esb(["enmasse", "import", input])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported \(input): 5 created, 0 updated"), "\(imported.stdout)")

        // Applied live: the channel answers with the imported password; the pool exists.
        #expect(try await source.request("POST", "/enmasse/echo", body: Data("hi".utf8), credentials: ("acme", "partner-secret")).text == "hi")
        let health = try await source.request("GET", "/esb/health", credentials: source.admin).json
        #expect((health?["components"] as? [String: Any])?["amqp.enmasse.out"] != nil)

        for format in ["yaml", "json"] {
            let exported = source.directory + "/export.\(format)"
            let export = try await source.esb(["enmasse", "export", "--format", format, "--include-secrets", "--output", exported])
            #expect(export.status == 0, "\(export.stderr)")
            let attributes = try FileManager.default.attributesOfItem(atPath: exported)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "a file with secrets is private")

            let fresh = try TestServer()
            try await fresh.start()
            let into = try await fresh.esb(["enmasse", "import", exported])
            #expect(into.status == 0, "\(into.stderr)")
            let again = try await fresh.esb(["enmasse", "export", "--format", format, "--include-secrets"])
            #expect(again.stdout == (try String(contentsOfFile: exported, encoding: .utf8)), "identical (\(format))")
            #expect(try await fresh.request("POST", "/enmasse/echo", body: Data("x".utf8), credentials: ("acme", "partner-secret")).status == 200)
            await fresh.stop()
        }

        let plain = try await source.esb(["enmasse", "export"])
        #expect(plain.status == 0 && plain.stdout.contains("enmasse.out"))
        #expect(!plain.stdout.contains("partner-secret") && !plain.stdout.contains("password"), "no secrets unless asked")
        let viaAPI = try await source.request("GET", "/esb/api/enmasse/export?format=json", credentials: source.admin)
        #expect(viaAPI.status == 200 && viaAPI.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(try JSONSerialization.jsonObject(with: viaAPI.body) is [String: Any])
    }

    @Test func aBadFileChangesNothingAndNamesTheObjectAndDuplicatesNeedReplace() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let bad = Self.file(brokerPort: AMQPPeer.port).replacingOccurrences(of: "def: broker", with: "def: no-such-broker")
        let reply = try await server.request("POST", "/esb/api/enmasse/import?name=bad.yaml", body: Data(bad.utf8), credentials: server.admin)
        #expect(reply.status == 422)
        let error = reply.json?["error"] as? [String: Any]
        #expect((error?["message"] as? String)?.contains("bad.yaml:18: outgoing AMQP connection 'enmasse.out': def refers to 'no-such-broker'") == true,
                "\(reply.text)")
        #expect((error?["problems"] as? [[String: Any]])?.first?["field"] as? String == "def")
        for path in ["security/basic-auth", "channels/http", "definitions/amqp", "outgoing/amqp", "outgoing/http"] {
            #expect(try await server.request("GET", "/esb/api/\(path)", credentials: server.admin).text == "[]", "nothing applied: \(path)")
        }

        let file = server.directory + "/objects.yaml"
        try Self.file(brokerPort: AMQPPeer.port).write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try await server.esb(["enmasse", "import", file]).status == 0)
        let changed = server.directory + "/changed.yaml"
        try Self.file(brokerPort: AMQPPeer.port).replacingOccurrences(of: "priority: 3", with: "priority: 8")
            .write(toFile: changed, atomically: true, encoding: .utf8)
        let duplicate = try await server.esb(["enmasse", "import", changed])
        #expect(duplicate.status != 0)
        #expect(duplicate.stderr.contains("\(changed):18: outconn_amqp 'enmasse.out' already exists in the ODB"), "\(duplicate.stderr)")
        #expect(try await server.request("GET", "/esb/api/outgoing/amqp/enmasse.out", credentials: server.admin).json?["priority"] as? Int == 3)

        let replaced = try await server.esb(["enmasse", "import", changed, "--replace"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(replaced.stdout.contains("0 created, 5 updated"))
        #expect(try await server.request("GET", "/esb/api/outgoing/amqp/enmasse.out", credentials: server.admin).json?["priority"] as? Int == 8)
    }
}
