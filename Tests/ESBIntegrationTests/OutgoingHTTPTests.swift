import Foundation
import Testing

/// Outgoing HTTP connections from dropped services in a real esbd, against local upstream
/// servers (scripts/testkit/http_upstream.py): JSON and XML, path parameters and query, basic
/// auth, timeouts, upstream errors, inactive connections, live edits; and XML channels.
@Suite struct OutgoingHTTPTests {
    static let services = """
        import ESBService
        import Foundation

        struct Order: Decodable {
            var outconn: String
            var method: String?
            var path: [String: String]?
            var query: [String: String]?
            var headers: [String: String]?
            var body: String?
            var encodable: Bool?
        }

        struct Outcome: Encodable {
            var status: Int?
            var body: String?
            var contentType: String?
            var error: String?
            var message: String?
            var cid: String?
        }

        struct Payload: Codable { var k: Int }

        /// Calls an outconn as the order says and reports what came back, or the error.
        struct Call: Service {
            static let name = "out.call"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let order = try request.decode(Order.self)
                let connection = context.outgoing.http[order.outconn]
                let path = order.path ?? [:], query = order.query ?? [:], headers = order.headers ?? [:]
                do {
                    let response: OutgoingHTTPResponse
                    switch order.method ?? "GET" {
                    case "POST": response = try await connection.post(path: path, query: query, headers: headers, body: order.body ?? "")
                    case "PUT" where order.encodable == true:
                        response = try await connection.put(path: path, query: query, headers: headers, body: Payload(k: 7))
                    case "PUT": response = try await connection.put(path: path, query: query, headers: headers, body: Data((order.body ?? "").utf8))
                    case "PATCH": response = try await connection.patch(path: path, query: query, headers: headers, body: order.body ?? "")
                    case "DELETE": response = try await connection.delete(path: path, query: query, headers: headers)
                    default: response = try await connection.get(path: path, query: query, headers: headers)
                    }
                    return try .json(Outcome(status: response.status, body: response.text, contentType: response.headers["content-type"],
                                             cid: context.cid))
                } catch let error as ServiceError {
                    return try .json(Outcome(error: error.code.rawValue, message: error.message, cid: context.cid))
                }
            }
        }

        /// Sends an XML document built with XMLDocument and reads the XML answer.
        struct XMLCall: Service {
            static let name = "out.xml"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let root = XMLElement(name: "order")
                root.addChild(XMLElement(name: "id", stringValue: request.text))
                let document = XMLDocument(rootElement: root)
                let response = try await context.outgoing.http["up-xml"].post(body: document.xmlData)
                let echoed = try response.xml()
                let body = try echoed.nodes(forXPath: "/echo/body").first?.stringValue ?? ""
                let type = try echoed.nodes(forXPath: "/echo/header[@name='content-type']").first?.stringValue ?? ""
                return .text(type + "|" + body)
            }
        }

        /// Behind an XML channel: reads the XML request, answers XML.
        struct XMLChannel: Service {
            static let name = "out.xml-channel"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let id = try request.xml().rootElement()?.elements(forName: "id").first?.stringValue ?? "?"
                let reply = XMLElement(name: "reply")
                reply.addAttribute(XMLNode.attribute(withName: "id", stringValue: id) as! XMLNode)
                return .xml(XMLDocument(rootElement: reply))
            }
        }
        """

    struct Fixture {
        let server: TestServer
        let upstream: ScriptServer
        let upstreamPort: Int

        init() async throws {
            upstreamPort = TestEnvironment.freePort()
            upstream = try await ScriptServer("scripts/testkit/http_upstream.py", [String(upstreamPort), "A", "up-user", "up-pass"])
            server = try TestServer()
            try await server.start()
            try server.drop("outhttp.swift", OutgoingHTTPTests.services)
            try await server.waitForDeployment("outhttp.swift")
        }

        func stop() async {
            await server.stop()
            upstream.stop()
        }

        @discardableResult
        func create(_ path: String, _ object: [String: Any]) async throws -> TestServer.Reply {
            let reply = try await server.request("POST", "/esb/api/\(path)", body: try JSONSerialization.data(withJSONObject: object),
                                                 credentials: server.admin)
            guard reply.status == 201 else { throw TestFailure("create \(path): \(reply.status) \(reply.text)") }
            return reply
        }

        func outconn(_ name: String, path: String, port: Int? = nil, _ extra: [String: Any] = [:]) async throws {
            try await create("outgoing/http", ["name": name, "address": "http://127.0.0.1:\(port ?? upstreamPort)", "url_path": path]
                .merging(extra) { $1 })
        }

        func call(_ order: [String: Any]) async throws -> [String: Any] {
            let reply = try await server.request("POST", "/esb/api/invoke/out.call", body: try JSONSerialization.data(withJSONObject: order),
                                                 credentials: server.admin)
            return reply.json ?? ["raw": reply.text]
        }
    }

    func json(_ text: Any?) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(((text as? String) ?? "").utf8)) as? [String: Any])
    }

    @Test func jsonRoundTripWithPathParametersQueryHeadersAndTheCid() async throws {
        let fixture = try await Fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.outconn("up-echo", path: "/echo/{kind}/{id}")

        let posted = try await fixture.call(["outconn": "up-echo", "method": "POST", "path": ["kind": "orders", "id": "A 7/x"],
                                             "query": ["q": "a b&c", "n": "1"], "headers": ["x-custom": "yes"], "body": #"{"k":1}"#])
        #expect(posted["status"] as? Int == 200, "\(posted)")
        let echo = try json(posted["body"])
        #expect(echo["method"] as? String == "POST")
        #expect(echo["path"] as? String == "/echo/orders/A%207%2Fx", "parameters are one path segment each")
        #expect(echo["query"] as? [String: String] == ["q": "a b&c", "n": "1"])
        let headers = echo["headers"] as? [String: String] ?? [:]
        #expect(headers["x-custom"] == "yes" && headers["content-type"] == "application/json" && headers["accept"] == "application/json")
        #expect(headers["x-esb-cid"] == posted["cid"] as? String, "x-esb-cid is the calling service's cid")
        #expect(echo["body"] as? String == #"{"k":1}"#)
        #expect(posted["contentType"] as? String == "application/json")

        let encodable = try await fixture.call(["outconn": "up-echo", "method": "PUT", "path": ["kind": "k", "id": "1"], "encodable": true])
        #expect(try json(encodable["body"])["body"] as? String == #"{"k":7}"#, "an Encodable body is sent as JSON")
        for method in ["GET", "PATCH", "DELETE"] {
            let reply = try await fixture.call(["outconn": "up-echo", "method": method, "path": ["kind": "k", "id": "1"], "body": "x"])
            #expect(try json(reply["body"])["method"] as? String == method)
        }

        let missing = try await fixture.call(["outconn": "up-echo", "path": ["kind": "k"]])
        #expect(missing["error"] as? String == "http.invalid_request")
        #expect((missing["message"] as? String)?.contains("path parameter 'id' of /echo/{kind}/{id} is missing") == true)
    }

    @Test func xmlBodiesBothWaysAndXMLChannels() async throws {
        let fixture = try await Fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.outconn("up-xml", path: "/xml/echo", ["data_format": "xml", "method": "POST"])
        let reply = try await fixture.server.invoke("out.xml", "A7")
        #expect(reply.text.hasPrefix("application/xml"), "\(reply.text)")
        #expect(reply.text.contains("<order><id>A7</id></order>"), "the XML document built in the service arrived: \(reply.text)")

        try await fixture.create("channels/http", ["name": "xml-in", "url_path": "/xml/in", "service": "out.xml-channel", "data_format": "xml"])
        let answered = try await fixture.server.request("POST", "/xml/in", body: Data("<order><id>B8</id></order>".utf8))
        #expect(answered.status == 200)
        #expect(answered.headers["content-type"]?.hasPrefix("application/xml") == true)
        #expect(answered.text.contains(#"<reply id="B8"/>"#), "\(answered.text)")
        let malformed = try await fixture.server.request("POST", "/xml/in", body: Data("<order><id>".utf8))
        #expect(malformed.status == 400)
        #expect(((malformed.json?["error"] as? [String: Any])?["code"] as? String) == "invalid_xml")
    }

    @Test func basicAuthTimeoutsUpstreamErrorsInactiveAndUnknown() async throws {
        let fixture = try await Fixture()
        defer { Task { await fixture.stop() } }
        try await fixture.create("security/basic-auth", ["name": "up-cred", "username": "up-user", "password": "up-pass"])
        try await fixture.create("security/basic-auth", ["name": "up-wrong", "username": "up-user", "password": "nope"])
        try await fixture.outconn("up-auth", path: "/auth", ["security": "up-cred"])
        try await fixture.outconn("up-auth-wrong", path: "/auth", ["security": "up-wrong"])
        try await fixture.outconn("up-slow", path: "/slow", ["timeout_ms": 300])
        try await fixture.outconn("up-status", path: "/status/{code}")
        try await fixture.outconn("up-off", path: "/name", ["is_active": false])
        try await fixture.outconn("up-closed", path: "/name", port: TestEnvironment.freePort(), ["timeout_ms": 1000])

        let authorized = try await fixture.call(["outconn": "up-auth"])
        #expect(try json(authorized["body"])["user"] as? String == "up-user", "\(authorized)")
        let refused = try await fixture.call(["outconn": "up-auth-wrong"])
        #expect(refused["error"] as? String == "http.status" && (refused["message"] as? String)?.contains("answered 401") == true)

        let slow = try await fixture.call(["outconn": "up-slow", "query": ["ms": "3000"]])
        #expect(slow["error"] as? String == "http.timeout", "\(slow)")
        #expect((slow["message"] as? String)?.contains("no answer within 300 ms") == true)

        let failing = try await fixture.call(["outconn": "up-status", "path": ["code": "503"]])
        #expect(failing["error"] as? String == "http.status")
        #expect((failing["message"] as? String)?.contains("answered 503 Service Unavailable: upstream says 503") == true, "\(failing)")

        #expect(try await fixture.call(["outconn": "up-off"])["error"] as? String == "http.inactive")
        #expect(try await fixture.call(["outconn": "no-such"])["error"] as? String == "http.unknown_outconn")
        let closed = try await fixture.call(["outconn": "up-closed"])
        #expect(closed["error"] as? String == "http.connection_failed", "\(closed)")
    }

    @Test func anEditOfTheAddressTakesEffectLive() async throws {
        let fixture = try await Fixture()
        defer { Task { await fixture.stop() } }
        let otherPort = TestEnvironment.freePort()
        let other = try await ScriptServer("scripts/testkit/http_upstream.py", [String(otherPort), "B"])
        defer { other.stop() }
        try await fixture.outconn("up-name", path: "/name")
        #expect(try json(try await fixture.call(["outconn": "up-name"])["body"])["server"] as? String == "A")
        let edited = try await fixture.server.request("PUT", "/esb/api/outgoing/http/up-name",
                                                      body: Data(#"{"address": "http://127.0.0.1:\#(otherPort)"}"#.utf8),
                                                      credentials: fixture.server.admin)
        #expect(edited.status == 200)
        #expect(try json(try await fixture.call(["outconn": "up-name"])["body"])["server"] as? String == "B")
        let invalid = try await fixture.server.request("PUT", "/esb/api/outgoing/http/up-name",
                                                       body: Data(#"{"address": "ftp://x/y"}"#.utf8), credentials: fixture.server.admin)
        #expect(invalid.status == 422)
        #expect(((invalid.json?["error"] as? [String: Any])?["field"] as? String) == "address")
    }
}
