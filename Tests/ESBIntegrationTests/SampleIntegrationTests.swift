import Foundation
import Testing

/// The sample integration of config/samples, end to end as the README walks through it:
/// the two upstream stubs, `esb enmasse import`, `esb deploy`, then the channel.
@Suite struct SampleIntegrationTests {
    @Test func theChannelCombinesTheJSONAndXMLAPIs() async throws {
        let jsonPort = TestEnvironment.freePort(), xmlPort = TestEnvironment.freePort()
        let upstreams = try await ScriptServer("config/samples/upstreams.py", [String(jsonPort), String(xmlPort)])
        defer { upstreams.stop() }
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }

        let samples = TestEnvironment.packageRoot + "/config/samples"
        let objects = try String(contentsOfFile: samples + "/enmasse.yaml", encoding: .utf8)
            .replacingOccurrences(of: "127.0.0.1:8701", with: "127.0.0.1:\(jsonPort)")
            .replacingOccurrences(of: "127.0.0.1:8702", with: "127.0.0.1:\(xmlPort)")
        let file = server.directory + "/sample-enmasse.yaml"
        try objects.write(toFile: file, atomically: true, encoding: .utf8)
        let imported = try await server.esb(["enmasse", "import", file])
        #expect(imported.status == 0, "\(imported.stderr)")
        let deployed = try await server.esb(["deploy", samples + "/quote.swift"])
        #expect(deployed.status == 0, "\(deployed.stderr)")

        let reply = try await server.request("GET", "/sample/quote/acme?currency=GBP")
        #expect(reply.status == 200, "\(reply.text)")
        let quote = try #require(reply.json)
        #expect(quote["symbol"] as? String == "ACME" && quote["name"] as? String == "Acme Corporation")
        #expect(quote["currency"] as? String == "GBP" && quote["price_usd"] as? Double == 123.45)
        #expect(quote["rate"] as? Double == 0.7874 && quote["price"] as? Double == 97.2)
        #expect(quote["quoted_at"] as? String == "2026-11-27T16:00:00Z" && quote["rates_date"] as? String == "2026-11-27")

        let unknown = try await server.request("GET", "/sample/quote/nope")
        #expect(unknown.status == 404 && unknown.json?["error"] as? String == "unknown symbol NOPE")
        let noRate = try await server.request("GET", "/sample/quote/globex?currency=XXX")
        #expect(noRate.status == 422)

        upstreams.stop()
        let down = try await server.request("GET", "/sample/quote/acme")
        #expect(down.status == 502)
        // The caller learns that it failed and the cid; the upstream's address stays in the log.
        #expect(down.json?["error"] as? String == "the quotes service is unavailable", "\(down.text)")
        let cid = try #require(down.json?["cid"] as? String)
        #expect(!down.text.contains("127.0.0.1"))
        #expect(server.log.contains(cid) && server.log.contains("http.connection_failed"))
    }
}
