import Foundation
import Testing

/// HTTP channels and basic-auth definitions through the admin API, served by a real esbd.
@Suite struct ChannelTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    func deployOrderService(_ server: TestServer) async throws {
        try server.drop("orders.swift", """
            import ESBService
            struct GetOrder: Service {
                static let name = "orders.get"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    var response = try ServiceResponse.json([
                        "id": request.pathParameters["id"] ?? "", "channel": request.channel,
                        "expand": request.query["expand"] ?? "", "body": request.text,
                    ])
                    response.status = 202
                    response.headers["X-Order"] = request.pathParameters["id"] ?? ""
                    return response
                }
            }
            """)
        try await server.waitForDeployment("orders.swift")
    }

    @Test func channelInvokesItsServiceWithPathParametersQueryAndBody() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try await deployOrderService(server)

        let created = try await server.request("POST", "/esb/api/channels/http", body: json([
            "name": "orders", "url_path": "/api/orders/{id}", "method": "POST", "service": "orders.get",
        ]), credentials: server.admin)
        #expect(created.status == 201)
        #expect(created.json?["data_format"] as? String == "json", "defaults applied")
        #expect(created.json?["security"] as? String == "none")

        let reply = try await server.request("POST", "/api/orders/A%2F7?expand=lines", body: Data(#"{"qty": 2}"#.utf8))
        #expect(reply.status == 202)
        #expect(reply.headers["x-order"] == "A/7")
        #expect(reply.headers["x-esb-cid"]?.count == 24)
        #expect(reply.json?["id"] as? String == "A/7")
        #expect(reply.json?["channel"] as? String == "http")
        #expect(reply.json?["expand"] as? String == "lines")
        #expect(reply.json?["body"] as? String == #"{"qty": 2}"#)

        let wrongMethod = try await server.request("GET", "/api/orders/A7")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.headers["allow"] == "POST")
        let badJSON = try await server.request("POST", "/api/orders/A7", body: Data("not json".utf8))
        #expect(badJSON.status == 400)
        #expect((badJSON.json?["error"] as? [String: Any])?["code"] as? String == "invalid_json")
        #expect(try await server.request("POST", "/api/other").status == 404)

        // is_active false takes the channel offline, live.
        let edited = try await server.request("PUT", "/esb/api/channels/http/orders", body: json(["is_active": false]),
                                              credentials: server.admin)
        #expect(edited.status == 200)
        #expect(edited.json?["url_path"] as? String == "/api/orders/{id}", "PUT keeps absent fields")
        #expect(try await server.request("POST", "/api/orders/A7", body: Data("{}".utf8)).status == 404)
    }

    @Test func channelWithBasicAuthNeedsTheDefinitionsCredentials() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try await deployOrderService(server)

        let definition = try await server.request("POST", "/esb/api/security/basic-auth", body: json([
            "name": "partner", "username": "acme", "password": "first-secret",
        ]), credentials: server.admin)
        #expect(definition.status == 201)
        #expect(definition.json?["password"] == nil, "never returned")
        #expect(try await server.request("POST", "/esb/api/channels/http", body: json([
            "name": "secure", "url_path": "/secure/{id}", "service": "orders.get", "security": "partner", "data_format": "text",
        ]), credentials: server.admin).status == 201)

        let anonymous = try await server.request("GET", "/secure/1")
        #expect(anonymous.status == 401)
        #expect(anonymous.headers["www-authenticate"] == #"Basic realm="SwiftESB""#)
        #expect(try await server.request("GET", "/secure/1", credentials: ("acme", "wrong")).status == 401)
        #expect(try await server.request("GET", "/secure/1", credentials: ("acme", "first-secret")).status == 202)

        let mismatch = try await server.request("POST", "/esb/api/security/basic-auth/partner/password",
                                                body: json(["password1": "a", "password2": "b"]), credentials: server.admin)
        #expect(mismatch.status == 422)
        #expect(try await server.request("POST", "/esb/api/security/basic-auth/partner/password",
                                         body: json(["password1": "second", "password2": "second"]), credentials: server.admin).status == 204)
        #expect(try await server.request("GET", "/secure/1", credentials: ("acme", "first-secret")).status == 401)
        #expect(try await server.request("GET", "/secure/1", credentials: ("acme", "second")).status == 202)

        let inUse = try await server.request("DELETE", "/esb/api/security/basic-auth/partner", credentials: server.admin)
        #expect(inUse.status == 409)
        #expect(((inUse.json?["error"] as? [String: Any])?["message"] as? String)?.contains("HTTP channel 'secure'") == true)

        // The password is stored encrypted, not in the clear.
        let database = try String(decoding: Data(contentsOf: URL(fileURLWithPath: server.directory + "/esb.db")), as: UTF8.self)
        #expect(!database.contains("second"))
    }

    @Test func invalidObjectsAreRefusedNamingTheField() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        func error(_ body: [String: Any]) async throws -> (Int, String?, String?) {
            let reply = try await server.request("POST", "/esb/api/channels/http", body: json(body), credentials: server.admin)
            let error = reply.json?["error"] as? [String: Any]
            return (reply.status, error?["field"] as? String, error?["message"] as? String)
        }
        let reserved = try await error(["name": "x", "url_path": "/esb/api/x", "service": "s"])
        #expect(reserved.0 == 422 && reserved.1 == "url_path")
        let missing = try await error(["name": "x", "url_path": "/x"])
        #expect(missing.0 == 422 && missing.1 == "service" && missing.2 == "HTTP channel 'x': service is required")
        let badMethod = try await error(["name": "x", "url_path": "/x", "service": "s", "method": "FETCH"])
        #expect(badMethod.0 == 422 && badMethod.1 == "method")
        let unknownSecurity = try await error(["name": "x", "url_path": "/x", "service": "s", "security": "ghost"])
        #expect(unknownSecurity.0 == 422 && unknownSecurity.1 == "security")
        #expect(unknownSecurity.2 == "HTTP channel 'x': security refers to 'ghost', which does not exist (def_sec)")
        let wrongType = try await error(["name": "x", "url_path": "/x", "service": "s", "is_active": "yes"])
        #expect(wrongType.0 == 422 && wrongType.1 == "is_active")
        let unknownField = try await error(["name": "x", "url_path": "/x", "service": "s", "colour": "red"])
        #expect(unknownField.0 == 422 && unknownField.1 == "colour")

        #expect(try await error(["name": "dup", "url_path": "/dup", "service": "s"]).0 == 201)
        let duplicate = try await error(["name": "dup", "url_path": "/dup2", "service": "s"])
        #expect(duplicate.0 == 409 && duplicate.2 == "HTTP channel 'dup' already exists")
        #expect(try await server.request("GET", "/esb/api/channels/http/nope", credentials: server.admin).status == 404)
        #expect(try await server.request("DELETE", "/esb/api/channels/http/dup", credentials: server.admin).status == 204)
        #expect(try await server.request("GET", "/esb/api/channels/http", credentials: server.admin).text == "[]")
    }

    @Test func channelsAndSecurityFromTheCommandLine() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        func esb(_ arguments: [String]) async throws -> CommandResult { try await server.esb(arguments) }
        let created = try await esb(["security", "create", "cli-def", "username=u1", "password=p1"])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(!created.stdout.contains("p1"))
        let channel = try await esb(["channels", "create", "cli-echo", "url_path=/cli/echo", "service=esb.helpers.echo",
                                     "security=cli-def", "data_format=text"])
        #expect(channel.status == 0, "\(channel.stderr)")
        #expect(try await esb(["channels", "list"]).stdout.contains("\"cli-echo\""))
        #expect(try await server.request("POST", "/cli/echo", body: Data("hey".utf8), credentials: ("u1", "p1")).text == "hey")

        let passwordFile = server.directory + "/new.password"
        try "p2\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        #expect(try await esb(["security", "password", "cli-def", "--password-file", passwordFile]).status == 0)
        let inUse = try await esb(["security", "delete", "cli-def"])
        #expect(inUse.status != 0)
        #expect(inUse.stderr.contains("in use by HTTP channel 'cli-echo'"))
        #expect(try await esb(["channels", "edit", "cli-echo", "is_active=false"]).stdout.contains("\"is_active\" : false"))
        #expect(try await esb(["channels", "delete", "cli-echo"]).status == 0)
        #expect(try await esb(["security", "delete", "cli-def"]).status == 0)
    }
}
