import Foundation
import Testing

/// R20: hostile clients against a running esbd, one test per rule of the contract's
/// "Security of the HTTP face": each sends the hostile request and checks what comes back.
@Suite struct SecurityTests {
    func json(_ object: [String: Any]) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// Services for the hostile requests: headers as seen, a failure with internal detail,
    /// XML parsing, SDK calls with extreme arguments, a bad status, a log line from the payload.
    static let services = #"""
        import ESBService
        import Foundation

        struct SeenHeaders: Service {
            static let name = "sec.headers"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                try .json(request.headers)
            }
        }

        struct Failing: Service {
            static let name = "sec.fail"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                throw ServiceError("upstream.down", "connection to 10.9.8.7:5432 (db-internal.corp) refused")
            }
        }

        struct ReadsXML: Service {
            static let name = "sec.xml"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                do {
                    return .text(try request.xml().rootElement()?.stringValue ?? "")
                } catch let error as ServiceError {
                    return .text(error.code.rawValue + "|" + error.message)
                }
            }
        }

        struct ExtremeArguments: Service {
            static let name = "sec.args"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                var outcomes: [String: String] = [:]
                func record(_ label: String, _ call: () async throws -> Void) async {
                    do {
                        try await call()
                        outcomes[label] = "ok"
                    } catch let error as ServiceError {
                        outcomes[label] = error.code.rawValue
                    } catch {
                        outcomes[label] = "\(error)"
                    }
                }
                let kvdb = context.kvdb, key = "sec.list"
                _ = try await kvdb.execute(["RPUSH", key, "a", "b", "c", "d", "e"])
                await record("perPage0") { _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 0).page(1) }
                await record("perPageNegative") { _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: -3).numPages }
                await record("orphansNegative") { _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 2, orphans: -1).page(1) }
                await record("perPageMaxOrphansMax") {
                    _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: .max, orphans: .max).page(1)
                }
                await record("zsetPerPage0") { _ = try await ZSetPaginator(kvdb: kvdb, key: "sec.zset", perPage: 0).count }
                await record("zsetPerPage0Pages") { _ = try await ZSetPaginator(kvdb: kvdb, key: "sec.zset", perPage: 0).pageRange }
                await record("onEachSideNegative") {
                    _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 1).getElidedPageRange(1, onEachSide: -1)
                }
                await record("onEndsNegative") {
                    _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 1).getElidedPageRange(1, onEnds: -5)
                }
                await record("elidedMax") {
                    _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 1).getElidedPageRange(3, onEachSide: .max, onEnds: .max)
                }
                await record("pageMax") { _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 2).page(Int.max) }
                await record("pageMin") { _ = try await ListPaginator(kvdb: kvdb, key: key, perPage: 2).getPage(Int.min) }
                let retry = context.patterns.invokeRetry
                await record("repeatsMax") { _ = try await retry.invoke("esb.ping", payload: Data(), repeats: .max, interval: .zero) }
                await record("repeatsNegative") { _ = try await retry.invoke("esb.ping", payload: Data(), repeats: -1, interval: .zero) }
                await record("intervalNegative") {
                    _ = try await retry.invokeAsync("esb.ping", payload: Data(), repeats: 1, interval: .seconds(-1))
                }
                await record("backoffNaN") {
                    _ = try await retry.invoke("esb.ping", payload: Data(), repeats: 1, interval: .zero, backoff: .nan)
                }
                await record("backoffHuge") {
                    _ = try await retry.invoke("esb.ping", payload: Data(), repeats: 1, interval: .seconds(1), backoff: 1e300)
                }
                await record("priority") {
                    try await context.outgoing.amqp.send(Data(), outconn: "nowhere", exchange: "", routingKey: "k",
                                                         properties: AMQPProperties(priority: 1000))
                }
                await record("deliveryMode") {
                    try await context.outgoing.amqp.send(Data(), outconn: "nowhere", exchange: "", routingKey: "k",
                                                         properties: AMQPProperties(deliveryMode: -7))
                }
                await record("timestamp") {
                    try await context.outgoing.amqp.send(Data(), outconn: "nowhere", exchange: "", routingKey: "k",
                                                         properties: AMQPProperties(timestamp: Date(timeIntervalSince1970: 1e300)))
                }
                return try .json(outcomes)
            }
        }

        struct BadStatus: Service {
            static let name = "sec.status"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                ServiceResponse(status: Int(request.query["status"] ?? "") ?? 42, payload: "odd")
            }
        }

        struct LogsPayload: Service {
            static let name = "sec.log"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                context.logger.warning("payload: " + request.text)
                return .empty
            }
        }
        """#

    /// A server with the services above deployed (and Redis, for the paginators).
    func server(main: String = "", sections: String = "") async throws -> TestServer {
        let server = try TestServer(main: main, sections: sections)
        try await server.start()
        try server.drop("security.swift", Self.services)
        try await server.waitForDeployment("security.swift")
        return server
    }

    func createChannel(_ server: TestServer, _ fields: [String: Any]) async throws {
        let reply = try await server.request("POST", "/esb/api/channels/http", body: json(fields), credentials: server.admin)
        #expect(reply.status == 201, "\(reply.text)")
    }

    /// `def_sec` partner (acme / s3cret) and the channel `/sec/guarded` it secures.
    func createGuardedChannel(_ server: TestServer) async throws {
        #expect(try await server.request("POST", "/esb/api/security/basic-auth",
                                         body: json(["name": "partner", "username": "acme", "password": "s3cret"]),
                                         credentials: server.admin).status == 201)
        try await createChannel(server, ["name": "guarded", "url_path": "/sec/guarded", "service": "sec.headers", "security": "partner"])
    }

    func basic(_ user: String, _ password: String) -> [String: String] {
        ["Authorization": "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
    }

    func errorCode(_ reply: TestServer.Reply) -> String? { (reply.json?["error"] as? [String: Any])?["code"] as? String }

    // MARK: Credentials

    @Test func r20DefinitionsWithoutAPasswordOrInactiveRefuseEveryRequest() async throws {
        let server = try await server()
        defer { Task { await server.stop() } }
        // As `esb security create NAME username=U` without a password, or a default export's import.
        #expect(try await server.request("POST", "/esb/api/security/basic-auth", body: json(["name": "nopass", "username": "u"]),
                                         credentials: server.admin).status == 201)
        #expect(try await server.request("POST", "/esb/api/security/basic-auth",
                                         body: json(["name": "off", "username": "u", "password": "p", "is_active": false]),
                                         credentials: server.admin).status == 201)
        try await createChannel(server, ["name": "a", "url_path": "/sec/a", "service": "sec.headers", "security": "nopass"])
        try await createChannel(server, ["name": "b", "url_path": "/sec/b", "service": "sec.headers", "security": "off"])
        for password in ["anything", "", "p"] {
            #expect(try await server.request("GET", "/sec/a", headers: basic("u", password)).status == 401)
            #expect(try await server.request("GET", "/sec/b", headers: basic("u", password)).status == 401)
        }
        #expect(try await server.request("GET", "/sec/a").status == 401)

        // An import that leaves a definition without a password says so.
        let imported = try await server.request("POST", "/esb/api/enmasse/import",
                                                body: Data("def_sec:\n  - name: partner\n    username: acme\n".utf8),
                                                credentials: server.admin)
        #expect(imported.status == 200)
        #expect((imported.json?["warnings"] as? [String])?.first?.contains("def_sec 'partner' has no password") == true, "\(imported.text)")
    }

    @Test func r20AnAuthorizationTheChannelCheckedNeverReachesTheService() async throws {
        let server = try await server()
        defer { Task { await server.stop() } }
        try await createGuardedChannel(server)
        try await createChannel(server, ["name": "open", "url_path": "/sec/open", "service": "sec.headers"])
        let guarded = try await server.request("GET", "/sec/guarded", headers: basic("acme", "s3cret"))
        #expect(guarded.status == 200)
        #expect(guarded.json?["authorization"] == nil, "checked credentials stay with the server: \(guarded.text)")
        let open = try await server.request("GET", "/sec/open", headers: ["Authorization": "Bearer token-for-the-service"])
        #expect(open.json?["authorization"] as? String == "Bearer token-for-the-service", "security none passes it on")
    }

    // MARK: Guessing

    @Test func r20PasswordGuessingIsThrottledPerRealmAndAddress() async throws {
        let server = try await server()
        defer { Task { await server.stop() } }
        try await createGuardedChannel(server)

        // Challenges (no credentials) are not failed sign-ins.
        for _ in 0..<15 { #expect(try await server.request("GET", "/esb/api/services").status == 401) }
        // More than 10 failures in a minute: the 11th is still answered, then the address waits.
        for attempt in 1...11 {
            let reply = try await server.request("GET", "/esb/api/services", credentials: ("admin", "guess-\(attempt)"))
            #expect(reply.status == 401)
        }
        let throttled = try await server.request("GET", "/esb/api/services", credentials: server.admin)
        #expect(throttled.status == 429, "right credentials included")
        #expect(errorCode(throttled) == "auth.throttled")
        #expect(Int(throttled.headers["retry-after"] ?? "") ?? 0 > 0)
        // The dashboard's sign-in is the same realm.
        let signIn = try await dashboardSignIn(server, jar: server.directory + "/cookies")
        #expect(signIn.stdout.hasPrefix("HTTP/1.1 429"), "\(signIn.stdout)")
        #expect(signIn.stdout.lowercased().contains("retry-after:"))
        // Each channel security definition is a realm of its own.
        #expect(try await server.request("GET", "/sec/guarded", headers: basic("acme", "s3cret")).status == 200)
        // Every failure is logged with the address and user name, never the password.
        #expect(server.log.contains("sign-in failed"))
        #expect(server.log.contains("esb.client=127.0.0.1") && server.log.contains("esb.user=admin"))
        #expect(!server.log.contains("guess-3"))
    }

    @Test func r20ForwardedForIsBelievedOnlyFromTrustedProxies() async throws {
        let trusted = try TestServer(main: "trusted_proxies = 127.0.0.1")
        try await trusted.start()
        defer { Task { await trusted.stop() } }
        for _ in 1...11 {
            _ = try await trusted.request("GET", "/esb/api/services", credentials: ("admin", "wrong"), headers: ["X-Forwarded-For": "198.51.100.7"])
        }
        #expect(try await trusted.request("GET", "/esb/api/services", credentials: trusted.admin,
                                          headers: ["X-Forwarded-For": "198.51.100.7"]).status == 429)
        #expect(try await trusted.request("GET", "/esb/api/services", credentials: trusted.admin,
                                          headers: ["X-Forwarded-For": "10.0.0.1, 198.51.100.8"]).status == 200, "another client")

        let untrusted = try TestServer()
        try await untrusted.start()
        defer { Task { await untrusted.stop() } }
        for attempt in 1...11 {
            _ = try await untrusted.request("GET", "/esb/api/services", credentials: ("admin", "wrong"),
                                            headers: ["X-Forwarded-For": "198.51.100.\(attempt)"])
        }
        #expect(try await untrusted.request("GET", "/esb/api/services", credentials: untrusted.admin,
                                            headers: ["X-Forwarded-For": "198.51.100.99"]).status == 429,
                "a forged X-Forwarded-For changes nothing when the peer is not a trusted proxy")
    }

    // MARK: Cross-site requests

    @Test func r20CrossSiteStateChangesAreRefusedBeforeTheBodyIsRead() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let source = Data("import ESBService\nstruct P: Service { static let name = \"p.svc\"; func handle(_ r: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .text(\"pwned\") } }".utf8)
        let evil = try await server.request("POST", "/esb/api/deploy?name=p.swift", body: source, credentials: server.admin,
                                            headers: ["Origin": "http://evil.example", "Content-Type": "text/plain"])
        #expect(evil.status == 403)
        #expect(errorCode(evil) == "forbidden.cross_site")
        let sameSite = try await server.request("POST", "/esb/api/security/basic-auth", body: json(["name": "x", "username": "u"]),
                                                credentials: server.admin, headers: ["Sec-Fetch-Site": "same-site"])
        #expect(sameSite.status == 403)
        let otherPort = try await server.request("DELETE", "/esb/api/security/basic-auth/x", credentials: server.admin,
                                                 headers: ["Origin": "http://127.0.0.1:\(server.port + 1)"])
        #expect(otherPort.status == 403)
        #expect(try await server.deployment("p.swift") == nil, "nothing was deployed")
        #expect(try await server.request("GET", "/esb/api/security/basic-auth/x", credentials: server.admin).status == 404)

        // Same origin, a browser's own navigation, and clients that send neither header pass.
        let sameOrigin = try await server.request("POST", "/esb/api/security/basic-auth", body: json(["name": "y", "username": "u"]),
                                                  credentials: server.admin,
                                                  headers: ["Origin": "http://127.0.0.1:\(server.port)", "Sec-Fetch-Site": "same-origin"])
        #expect(sameOrigin.status == 201)
        #expect(try await server.request("GET", "/esb/api/services", credentials: server.admin,
                                         headers: ["Origin": "http://evil.example"]).status == 200, "reads are not state changes")
    }

    // MARK: XML

    @Test func r20XMLThatDeclaresEntitiesIsRefusedEverywhere() async throws {
        let secretFile = TestEnvironment.temporaryDirectory("xxe") + "/secret.txt"
        try "TOP-SECRET-CONTENT".write(toFile: secretFile, atomically: true, encoding: .utf8)
        let upstreamPort = TestEnvironment.freePort()
        let upstream = try await ScriptServer("scripts/testkit/http_upstream.py", [String(upstreamPort), "U"])
        defer { upstream.stop() }
        let server = try await server()
        defer { Task { await server.stop() } }
        try await createChannel(server, ["name": "xml", "url_path": "/sec/xml", "service": "sec.xml", "data_format": "xml"])
        try await createChannel(server, ["name": "xmltext", "url_path": "/sec/xmltext", "service": "sec.xml", "data_format": "text"])

        let external = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file://\(secretFile)\">]><r>&x;</r>"
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
            + "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><lolz>&lol3;</lolz>"
        let externalDTD = "<?xml version=\"1.0\"?><!DOCTYPE r SYSTEM \"file://\(secretFile)\"><r>x</r>"
        let parameter = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY % p SYSTEM \"file://\(secretFile)\"> %p;]><r/>"
        var utf16 = Data([0xFF, 0xFE])
        utf16.append(external.replacingOccurrences(of: "<?xml version=\"1.0\"?>", with: "<?xml version=\"1.0\" encoding=\"UTF-16\"?>")
            .data(using: .utf16LittleEndian)!)
        let utf7 = Data("<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x SYSTEM +ACI-file://\(secretFile)+ACI-+AD4-+AF0-+AD4-<r>&x;</r>".utf8)
        for body in [Data(external.utf8), Data(bomb.utf8), Data(externalDTD.utf8), Data(parameter.utf8), utf16, utf7] {
            let channel = try await server.request("POST", "/sec/xml", body: body)
            #expect(channel.status == 400, "\(channel.text)")
            #expect(errorCode(channel) == "invalid_xml")
            #expect(!channel.text.contains("TOP-SECRET"))
            // A service calling request.xml() itself gets request.invalid_xml.
            let service = try await server.request("POST", "/sec/xmltext", body: body)
            #expect(service.text.hasPrefix("request.invalid_xml|"), "\(service.text)")
            #expect(!service.text.contains("TOP-SECRET"))
        }
        #expect(try await server.request("POST", "/sec/xml", body: Data("<r>plain</r>".utf8)).text == "plain", "ordinary XML works")

        // Outgoing responses go through the same check.
        #expect(try await server.request("POST", "/esb/api/outgoing/http", body: json([
            "name": "up", "address": "http://127.0.0.1:\(upstreamPort)", "url_path": "/xxe", "data_format": "xml",
        ]), credentials: server.admin).status == 201)
        try server.drop("outxml.swift", """
            import ESBService
            struct OutXML: Service {
                static let name = "sec.outxml"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    do {
                        let response = try await context.outgoing.http["up"].get(query: ["file": request.text])
                        return .text(try response.xml().rootElement()?.stringValue ?? "")
                    } catch let error as ServiceError {
                        return .text(error.code.rawValue)
                    }
                }
            }
            """)
        try await server.waitForDeployment("outxml.swift")
        let outgoing = try await server.invoke("sec.outxml", secretFile)
        #expect(outgoing.text == "request.invalid_xml", "\(outgoing.text)")
    }

    // MARK: What callers learn

    @Test func r20ChannelErrorsAndHealthLeakNoInternalDetail() async throws {
        let server = try await server()
        defer { Task { await server.stop() } }
        try await createChannel(server, ["name": "failing", "url_path": "/sec/fail", "service": "sec.fail"])
        let failed = try await server.request("GET", "/sec/fail")
        #expect(failed.status == 500)
        let error = try #require(failed.json?["error"] as? [String: Any])
        let cid = try #require(error["cid"] as? String)
        #expect(error["code"] as? String == "upstream.down")
        #expect(!failed.text.contains("10.9.8.7") && !failed.text.contains("db-internal"), "\(failed.text)")
        #expect(failed.headers["x-content-type-options"] == "nosniff")
        #expect(server.log.contains(cid) && server.log.contains("10.9.8.7"), "the log has the details under the cid")
        // The admin's invoke keeps the full text.
        #expect(try await server.invoke("sec.fail").text.contains("10.9.8.7"))

        // A status outside 100–599 is answered 500, not a trap.
        try await createChannel(server, ["name": "status", "url_path": "/sec/status", "service": "sec.status"])
        for status in ["42", "600", "-1", "99999"] {
            #expect(try await server.request("GET", "/sec/status?status=\(status)").status == 500)
        }
        #expect(try await server.request("GET", "/sec/status?status=201").status == 201)

        // Health: statuses for anyone; addresses, paths and errors only with the admin's credentials.
        let anonymous = try await server.request("GET", "/esb/health")
        #expect(anonymous.status == 200)
        #expect(!anonymous.text.contains("esb.db") && !anonymous.text.contains("detail") && !anonymous.text.contains(server.directory))
        let odb = (anonymous.json?["components"] as? [String: Any])?["odb"] as? [String: Any]
        #expect(odb?["status"] as? String == "ok")
        let admin = try await server.request("GET", "/esb/health", credentials: server.admin)
        #expect(admin.text.contains("esb.db"), "\(admin.text)")
    }

    // MARK: Limits

    @Test func r20OversizedBodiesAre413() async throws {
        let server = try await server(sections: "[hot_deploy]\nmax_source_bytes = 16384\n")
        defer { Task { await server.stop() } }
        try await createChannel(server, ["name": "big", "url_path": "/sec/big", "service": "sec.headers", "data_format": "text"])
        try await createChannel(server, ["name": "small", "url_path": "/sec/small", "service": "sec.headers", "data_format": "text",
                                         "max_body_bytes": 16])
        #expect(try await server.request("POST", "/sec/big", body: Data(count: 2 << 20)).status == 413, "over [main] max_body_bytes")
        #expect(try await server.request("POST", "/sec/big", body: Data(count: 1000)).status == 200)
        #expect(try await server.request("POST", "/sec/small", body: Data(count: 17)).status == 413)
        #expect(try await server.request("POST", "/sec/small", body: Data(count: 16)).status == 200)
        let source = "import ESBService\n// " + String(repeating: "x", count: 20_000) + "\n"
        #expect(try await server.request("POST", "/esb/api/deploy?name=big.swift", body: Data(source.utf8),
                                         credentials: server.admin).status == 413)
        // A dropped file over the limit is refused too; a link in the pickup directory is ignored.
        try server.drop("huge.swift", source)
        try "import ESBService\n".write(toFile: server.directory + "/outside.swift", atomically: true, encoding: .utf8)
        // Made beside the pickup directory and renamed in, as deploy tools place files.
        #expect(symlink(server.directory + "/outside.swift", server.directory + "/.linked") == 0)
        #expect(rename(server.directory + "/.linked", server.pickupDirectory + "/linked.swift") == 0)
        let deadline = Date().addingTimeInterval(60)
        while !(server.log.contains("huge.swift") && server.log.contains("linked.swift")) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(server.log.contains("max_source_bytes"))
        #expect(server.log.contains("symbolic link"))
        #expect(try await server.deployment("huge.swift") == nil)
        #expect(try await server.deployment("linked.swift") == nil)
    }

    @Test func r20SlowClientsAreCutOffAfterTheIdleTimeout() async throws {
        let server = try TestServer(main: "idle_timeout_seconds = 1")
        try await server.start()
        defer { Task { await server.stop() } }
        // Half a request head, then silence; and a connection that sends nothing at all.
        let halfHead = try RawConnection(port: server.port)
        try halfHead.send("GET /esb/ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        let silent = try RawConnection(port: server.port)
        #expect(halfHead.waitForClose(seconds: 30), "closed without a full head")
        #expect(silent.waitForClose(seconds: 30), "closed without a request")
        #expect(try await server.request("GET", "/esb/ping").status == 200, "others are served")
    }

    // MARK: Browsers

    @Test func r20BrowsersGetFramingCachingAndSniffingHeadersAndEncodedPages() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let login = try await runCommand("/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", "http://127.0.0.1:\(server.port)/esb/dashboard/login"])
        let headers = login.stdout.lowercased()
        #expect(headers.contains("x-frame-options: deny"))
        #expect(headers.contains("frame-ancestors 'none'"))
        #expect(headers.contains("cache-control: no-store"))
        let export = try await server.request("GET", "/esb/api/enmasse/export", credentials: server.admin)
        #expect(export.headers["x-frame-options"] == "DENY" && export.headers["cache-control"] == "no-store")

        // A name with quotes and markup: the delete confirmation is a data- attribute, escaped.
        let name = "x'\");alert(1);<img src=x onerror=alert(2)>"
        #expect(try await server.request("POST", "/esb/api/security/basic-auth", body: json(["name": name, "username": "u"]),
                                         credentials: server.admin).status == 201)
        let jar = server.directory + "/cookies"
        let page = try await dashboardPage(server, jar: jar, path: "/esb/dashboard/objects/def_sec/" + name.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        #expect(page.contains("data-confirm=\"Delete basic-auth definition &#39;x&#39;&quot;);alert(1);&lt;img src=x onerror=alert(2)&gt;&#39;?\""), "\(page)")
        #expect(!page.contains("onsubmit") && !page.contains("<img"))
        #expect(!page.contains("<script>"), "no inline script: only the static one")
        #expect(page.contains("<script src=\"/esb/dashboard/static/dashboard.js\""))
    }

    /// Posts the sign-in form with curl as a browser would (the form's CSRF cookie first;
    /// cookies kept in `jar`); the result's stdout holds the response headers.
    func dashboardSignIn(_ server: TestServer, jar: String) async throws -> CommandResult {
        let base = "http://127.0.0.1:\(server.port)"
        _ = try await runCommand("/usr/bin/curl", ["-s", "-c", jar, "-o", "/dev/null", base + "/esb/dashboard/login"])
        let cookies = (try? String(contentsOfFile: jar, encoding: .utf8)) ?? ""
        let token = cookies.split(separator: "\n").first { $0.contains("esb_login_csrf") }?.split(separator: "\t").last.map(String.init) ?? ""
        return try await runCommand("/usr/bin/curl", ["-s", "-b", jar, "-c", jar, "-D", "-", "-o", "/dev/null",
                                                      "--data-urlencode", "csrf=\(token)", "--data-urlencode", "username=admin",
                                                      "--data-urlencode", "password=\(server.password)", base + "/esb/dashboard/login"])
    }

    /// Signs in with curl (cookies in `jar`) and fetches `path`.
    func dashboardPage(_ server: TestServer, jar: String, path: String) async throws -> String {
        let signIn = try await dashboardSignIn(server, jar: jar)
        #expect(signIn.stdout.hasPrefix("HTTP/1.1 302"), "signed in: \(signIn.stdout)")
        return try await runCommand("/usr/bin/curl", ["-s", "-b", jar, "http://127.0.0.1:\(server.port)" + path]).stdout
    }

    @Test func r20DashboardSessionsEndWhenTheAdminCredentialsChange() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let jar = server.directory + "/cookies"
        #expect(try await dashboardPage(server, jar: jar, path: "/esb/dashboard/").contains("Overview"))
        try writeSecretFile("a-new-password\n", to: server.directory + "/admin.password")
        server.signal(SIGHUP)
        let deadline = Date().addingTimeInterval(60)
        var status = ""
        while Date() < deadline {
            status = try await runCommand("/usr/bin/curl", ["-s", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}",
                                                            "http://127.0.0.1:\(server.port)/esb/dashboard/"]).stdout
            if status == "302" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(status == "302", "the old session goes back to sign-in")
    }

    // MARK: TLS

    @Test func r20WithACertificateTheListenerSpeaksHTTPSOnly() async throws {
        let directory = TestEnvironment.temporaryDirectory("tls")
        let made = try await runCommand("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
            "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(chmod(directory + "/key.pem", 0o600) == 0)
        let server = try TestServer(main: "tls_cert_path = \(directory)/cert.pem\ntls_key_path = \(directory)/key.pem")
        try await server.start()
        defer { Task { await server.stop() } }
        let https = "https://127.0.0.1:\(server.port)"
        let ping = try await runCommand("/usr/bin/curl", ["-s", "--cacert", directory + "/cert.pem", https + "/esb/ping"])
        #expect(ping.stdout.contains("\"status\":\"ok\""), "\(ping.stderr)")
        let plain = try await runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                                                           "http://127.0.0.1:\(server.port)/esb/ping"])
        #expect(plain.stdout != "200", "no plain HTTP on a TLS listener")
        let untrusted = try await runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", https + "/esb/ping"])
        #expect(untrusted.status != 0, "the certificate is checked")
        // The CLI trusts the listener through --cacert, or ESB_CACERT.
        let cli = try await runCommand(TestEnvironment.esb, ["ping", "--url", https, "--cacert", directory + "/cert.pem"])
        #expect(cli.status == 0, "\(cli.stderr)")
        var environment = ProcessInfo.processInfo.environment
        environment["ESB_CACERT"] = directory + "/cert.pem"
        #expect(try await runCommand(TestEnvironment.esb, ["ping", "--url", https], environment: environment).status == 0)
        environment["ESB_CACERT"] = nil
        #expect(try await runCommand(TestEnvironment.esb, ["ping", "--url", https], environment: environment).status != 0,
                "not trusted without the CA")
        // TLS 1.2 and later only (the client's own floor lowered, so the server's is what refuses).
        let old = try await runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_1",
                                                            "-cipher", "DEFAULT@SECLEVEL=0"], input: Data())
        #expect(old.status != 0 && !old.stdout.contains("Server certificate"), "\(old.stdout)")
        let current = try await runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2"], input: Data())
        #expect(current.stdout.contains("TLSv1.2"), "\(current.stdout)\(current.stderr)")
        // Sessions are Secure cookies.
        let login = try await runCommand("/usr/bin/curl", ["-s", "-D", "-", "-o", "/dev/null", "--cacert", directory + "/cert.pem",
                                                           https + "/esb/dashboard/login"])
        #expect(login.stdout.lowercased().contains("; secure"))
    }

    @Test func r20APlainListenerOffLoopbackIsWarnedAbout() async throws {
        let server = try TestServer()
        let text = try String(contentsOfFile: server.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "bind = 127.0.0.1:", with: "bind = 0.0.0.0:")
            .write(toFile: server.configPath, atomically: true, encoding: .utf8)
        try await server.start()
        defer { Task { await server.stop() } }
        #expect(server.log.contains("without TLS"), "\(server.log)")
    }

    @Test func r20AdminAPIRefusalsNameTheByteOffsetOrTheField() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let broken = try await server.request("POST", "/esb/api/security/basic-auth", body: Data(#"{"name": "a", "username": }"#.utf8),
                                              credentials: server.admin)
        #expect(broken.status == 422)
        #expect(((broken.json?["error"] as? [String: Any])?["message"] as? String)?.contains("at byte 26") == true, "\(broken.text)")
        let wrongKind = try await server.request("POST", "/esb/api/security/basic-auth", body: json(["name": "a", "username": ["x"]]),
                                                 credentials: server.admin)
        #expect(wrongKind.status == 422)
        #expect((wrongKind.json?["error"] as? [String: Any])?["field"] as? String == "username", "\(wrongKind.text)")
    }

    @Test func r20ACompileThatRunsTooLongIsKilledWithItsChildren() async throws {
        let directory = TestEnvironment.temporaryDirectory("slow-swiftc")
        let compiler = directory + "/swiftc"
        // A compiler that never finishes, and starts a child of its own as swiftc does.
        try """
            #!/bin/sh
            if [ "$1" = "--version" ]; then echo "slow swiftc 1.0"; exit 0; fi
            sleep 120 &
            echo $! > \(directory)/child.pid
            wait
            """.write(toFile: compiler, atomically: true, encoding: .utf8)
        #expect(chmod(compiler, 0o755) == 0)
        let server = try TestServer(sections: "[hot_deploy]\nswiftc = \(compiler)\ncompile_timeout_seconds = 1\n")
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("slow.swift", "import ESBService\n" + HotDeployTests.service("Slow", "slow.svc", returning: "never"))
        let unit = try await server.waitForDeployment("slow.swift", status: "failed")
        #expect((unit["error"] as? String)?.contains("compile_timeout_seconds") == true, "\(unit)")
        let pid = try #require(Int32(try String(contentsOfFile: directory + "/child.pid", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let deadline = Date().addingTimeInterval(30)
        while kill(pid, 0) == 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(kill(pid, 0) != 0, "the compiler's child was killed too")
    }

    // MARK: Files

    @Test func r20FilesOtherUsersCouldChangeOrReadStopTheStart() async throws {
        let server = try TestServer()
        #expect(chmod(server.directory + "/admin.password", 0o644) == 0)
        try await server.start(waitForReady: false)
        #expect(await server.waitForExit() == 78)
        #expect(server.log.contains("admin.password") && server.log.contains("0644") && server.log.contains("readable by others"))

        #expect(chmod(server.directory + "/admin.password", 0o640) == 0, "group read is fine")
        try FileManager.default.createDirectory(atPath: server.pickupDirectory, withIntermediateDirectories: true)
        #expect(chmod(server.pickupDirectory, 0o777) == 0)
        try await server.start(waitForReady: false)
        #expect(await server.waitForExit() == 78)
        #expect(server.log.contains("pickup_dir") && server.log.contains("writable by others"))

        #expect(chmod(server.pickupDirectory, 0o755) == 0)
        try await server.start()
        await server.stop()
    }

    // MARK: Arguments that would trap

    @Test func r20SDKArgumentsThatWouldTrapAreRefusedWithArgumentInvalid() async throws {
        let redis = try await PrivateRedis()
        let server = try await server(sections: "[kvdb]\nport = \(redis.port)\n")
        defer { Task { await server.stop() } }
        let reply = try await server.invoke("sec.args")
        #expect(reply.status == 200, "\(reply.text)")
        let outcomes = try #require(try JSONSerialization.jsonObject(with: reply.body) as? [String: String])
        for label in ["perPage0", "perPageNegative", "orphansNegative", "zsetPerPage0Pages", "onEachSideNegative", "onEndsNegative",
                      "repeatsMax", "repeatsNegative", "intervalNegative", "backoffNaN", "backoffHuge", "priority",
                      "deliveryMode", "timestamp"] {
            #expect(outcomes[label] == "argument.invalid", "\(label): \(outcomes[label] ?? "missing")")
        }
        #expect(outcomes["perPageMaxOrphansMax"] == "ok")
        #expect(outcomes["elidedMax"] == "ok")
        #expect(outcomes["zsetPerPage0"] == "ok", "the count alone needs no page size")
        #expect(outcomes["pageMax"] == "That page contains no results")
        #expect(outcomes["pageMin"] == "ok", "getPage falls back to the last page, as Django")
        // The server is still up and nothing was quarantined.
        #expect(try await server.request("GET", "/esb/ping").status == 200)
        #expect(try await server.deployment("security.swift")?["status"] as? String == "deployed")
    }

    // MARK: kvdb credentials, logs, enmasse, outgoing HTTP, the CLI

    @Test func r20KVDBPasswordFileReachesRedisAuth() async throws {
        let redis = try await PrivateRedis(password: "redis-s3cret")
        let server = try TestServer(sections: "[kvdb]\nport = \(redis.port)\npassword_file = ./redis.password\n")
        try writeSecretFile("redis-s3cret\n", to: server.directory + "/redis.password")
        let check = try await runCommand(TestEnvironment.esb, ["config", "check", server.configPath])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("kv.swift", KVDBTests.service)
        try await server.waitForDeployment("kv.swift")
        let set = try await server.request("POST", "/esb/api/invoke/kv.run", body: try JSONEncoder().encode([["SET", "k", "v"]]),
                                           credentials: server.admin)
        #expect(set.text == "OK", "AUTH with the file's password: \(set.text)")
        #expect(!server.log.contains("redis-s3cret"))
    }

    @Test func r20APayloadCannotForgeALogLine() async throws {
        let server = try await server()
        defer { Task { await server.stop() } }
        _ = try await server.invoke("sec.log", "harmless\n2026-01-01T00:00:00.000Z critical esbd: FORGED admin logged in\u{1b}[2J")
        let deadline = Date().addingTimeInterval(30)
        while !server.log.contains("payload: harmless") && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let lines = server.log.split(separator: "\n")
        #expect(lines.contains { $0.contains("payload: harmless\\n2026-01-01") && $0.contains("\\u{1b}[2J") })
        #expect(!lines.contains { $0.hasPrefix("2026-01-01T00:00:00.000Z critical") }, "no line of the payload's own")
    }

    @Test func r20EnmasseImportsRefuseAliasesAndDeepNesting() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let laughs = """
            a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
            b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            def_sec: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
            """
        let aliases = try await server.request("POST", "/esb/api/enmasse/import", body: Data(laughs.utf8), credentials: server.admin)
        #expect(aliases.status == 422)
        #expect(aliases.text.contains("anchors and aliases"), "\(aliases.text)")
        let deep = "def_sec: " + String(repeating: "[", count: 100_000)
        let nested = try await server.request("POST", "/esb/api/enmasse/import", body: Data(deep.utf8), credentials: server.admin)
        #expect(nested.status == 422)
        #expect(nested.text.contains("nested deeper"), "\(nested.text)")
        let blockDeep = "def_sec:\n" + String(repeating: "- ", count: 5000) + "x\n"
        #expect(try await server.request("POST", "/esb/api/enmasse/import", body: Data(blockDeep.utf8), credentials: server.admin).status == 422)
        #expect(try await server.request("GET", "/esb/ping").status == 200)
    }

    @Test func r20OutgoingHTTPFollowsNoRedirectUnlessAsked() async throws {
        let upstreamPort = TestEnvironment.freePort()
        let upstream = try await ScriptServer("scripts/testkit/http_upstream.py", [String(upstreamPort), "U"])
        defer { upstream.stop() }
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        for (name, follow) in [("stays", false), ("follows", true)] {
            #expect(try await server.request("POST", "/esb/api/outgoing/http", body: json([
                "name": name, "address": "http://127.0.0.1:\(upstreamPort)", "url_path": "/redirect", "follow_redirects": follow,
            ]), credentials: server.admin).status == 201)
        }
        let withCredentials = try await server.request("POST", "/esb/api/outgoing/http", body: json([
            "name": "leaky", "address": "http://user:pass@127.0.0.1:\(upstreamPort)",
        ]), credentials: server.admin)
        #expect(withCredentials.status == 422)
        #expect((withCredentials.json?["error"] as? [String: Any])?["field"] as? String == "address")
        try server.drop("redirects.swift", """
            import ESBService
            struct Redirects: Service {
                static let name = "sec.redirects"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    do {
                        return .text(String(try await context.outgoing.http[request.text].get().status))
                    } catch let error as ServiceError {
                        return .text(error.code.rawValue)
                    }
                }
            }
            """)
        try await server.waitForDeployment("redirects.swift")
        #expect(try await server.invoke("sec.redirects", "stays").text == "http.status", "302 is not followed")
        #expect(try await server.invoke("sec.redirects", "follows").text == "200")
    }

    @Test func r20CLITakesSecretsFromFilesAndStdinAndEncodesNames() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        let url = "http://127.0.0.1:\(server.port)"
        let passwordFile = server.directory + "/cli.password"
        try writeSecretFile(server.password + "\n", to: passwordFile)
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ESB_") }
        let fromFile = try await runCommand(TestEnvironment.esb, ["services", "--url", url, "--password", "@" + passwordFile],
                                            environment: environment)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let fromStdin = try await runCommand(TestEnvironment.esb, ["security", "create", "odd name?x=1#y&z", "username=u", "password=-",
                                                                   "--url", url, "--password", "@" + passwordFile],
                                             environment: environment, input: Data("def-secret\n".utf8))
        #expect(fromStdin.status == 0, "\(fromStdin.stderr)")
        let shown = try await runCommand(TestEnvironment.esb, ["security", "get", "odd name?x=1#y&z", "--url", url, "--password", "@" + passwordFile],
                                         environment: environment)
        #expect(shown.status == 0 && shown.stdout.contains("odd name?x=1#y&z"), "\(shown.stdout)\(shown.stderr)")
        var variables = environment
        variables["ESB_PASSWORD_FILE"] = passwordFile
        #expect(try await runCommand(TestEnvironment.esb, ["ping", "--url", url], environment: variables).status == 0)
    }
}

/// A plain TCP connection for requests no HTTP client would send (slow, partial).
final class RawConnection: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("cannot connect to port \(port)") }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, 0) == bytes.count else { throw TestFailure("send failed") }
    }

    /// Whether the server closes the connection (reads EOF or a reset) within `seconds`.
    func waitForClose(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) > 0 else { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return true }
        }
        return false
    }

    deinit { close(fd) }
}
