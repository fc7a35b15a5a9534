import ESBCore
import ESBHotDeploy
import ESBService
import Foundation
import Hummingbird
import NIOFoundationCompat

/// The web dashboard at `/esb/dashboard/`: sign-in, overview, services (with an invoke
/// form), deployments with diagnostics, startup-service results, async lookups, enmasse.
/// Configuration objects have their own pages (``DashboardObjectPages``).
struct DashboardRoutes {
    let state: ServerState
    let invoker: ServiceInvoker
    let registry: ServiceRegistry
    let deploymentRegistry: DeploymentStore
    let startup: StartupServices
    let asyncStore: AsyncStore
    let objects: ObjectStore
    let amqp: AMQPOutconns
    let amqpChannels: AMQPChannels
    let scheduler: Scheduler
    let sessions: DashboardSessions
    let signIns: SignInGuard

    func register(on router: Router<ESBRequestContext>) {
        let dashboard = router.group("/esb/dashboard")
            .add(middleware: BrowserHeadersMiddleware())
            .add(middleware: CrossSiteMiddleware(secure: state.config.main.usesTLS))
            .add(middleware: DashboardAuthMiddleware(sessions: sessions, server: { [state] in state.name }))
        registerSignIn(on: dashboard)
        dashboard.get("static/dashboard.js") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/javascript; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: HTML.script)))
        }
        dashboard.get("/") { request, _ in try await overview(request) }
        dashboard.get("services") { request, _ in try await services(request, invoked: nil) }
        dashboard.post("services/invoke") { request, _ in try await invoke(request) }
        dashboard.get("deployments") { request, _ in try await deployments(request) }
        dashboard.get("startup") { request, _ in startup(request) }
        dashboard.get("async") { request, _ in try await asyncLookup(request) }
        dashboard.get("cluster") { request, _ in try await cluster(request) }
        dashboard.get("enmasse") { request, _ in enmasse(request, outcome: nil) }
        dashboard.get("enmasse/export") { request, _ in try await enmasseExport(request) }
        dashboard.post("enmasse/import") { request, _ in try await enmasseImport(request) }
        DashboardObjectPages(state: state, objects: objects, amqp: amqp, amqpChannels: amqpChannels, scheduler: scheduler, sessions: sessions).register(on: dashboard)
    }

    /// A full page for the request's session.
    static func page(_ request: Request, state: ServerState, sessions: DashboardSessions, title: String, section: String,
                     status: HTTPResponse.Status = .ok, _ content: String) -> Response {
        let html = HTML.page(title: title, server: state.name, section: section, csrf: sessions.session(for: request)?.csrf, content)
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    private func page(_ request: Request, _ title: String, _ section: String, status: HTTPResponse.Status = .ok,
                      _ content: String) -> Response {
        Self.page(request, state: state, sessions: sessions, title: title, section: section, status: status, content)
    }

    private func csrf(_ request: Request) -> String { sessions.session(for: request)?.csrf ?? "" }

    // MARK: Sign-in

    private func registerSignIn(on dashboard: RouterGroup<ESBRequestContext>) {
        dashboard.get("login") { request, _ in
            await sessions.load(for: request)
            if sessions.session(for: request) != nil { return Response.redirect(to: Self.safeNext(request.uri.queryParameters["next"].map(String.init))) }
            return signInPage(next: request.uri.queryParameters["next"].map(String.init), error: nil, status: .ok)
        }
        dashboard.post("login") { request, context in
            var request = request
            let form = FormData(try await request.collectBody(upTo: 1 << 16))
            guard let token = form["csrf"], token == DashboardSessions.cookie(DashboardSessions.loginCookieName, in: request) else {
                return signInPage(next: form["next"], error: "The sign-in form expired; try again.", status: .forbidden)
            }
            // The admin API and the dashboard are one realm for the guessing throttle.
            let outcome = signIns.check(
                realm: AdminAuthMiddleware.realm,
                address: context.clientAddress(request, trustedProxies: state.config.main.trustedProxies),
                path: request.uri.path, credentials: (form["username"] ?? "", form["password"] ?? ""),
                verify: state.credentials.matches)
            switch outcome {
            case .accepted:
                break
            case .challenge, .refused:
                return signInPage(next: form["next"], error: "Wrong user name or password.", status: .unauthorized)
            case .throttled(let retryAfter):
                var response = signInPage(next: form["next"], error: "Too many failed sign-ins from this address; try again in \(retryAfter) s.",
                                          status: .tooManyRequests)
                response.headers[.retryAfter] = String(retryAfter)
                return response
            }
            var response = Response.redirect(to: Self.safeNext(form["next"]), type: .found)
            response.headers[values: .setCookie] = [
                sessions.setCookie(DashboardSessions.cookieName, try await sessions.create()),
                sessions.setCookie(DashboardSessions.loginCookieName, "", maxAge: 0),
            ]
            return response
        }
        dashboard.post("logout") { request, _ in
            try await sessions.end(for: request)
            var response = Response.redirect(to: "/esb/dashboard/login", type: .found)
            response.headers[.setCookie] = sessions.setCookie(DashboardSessions.cookieName, "", maxAge: 0)
            return response
        }
    }

    /// Only dashboard paths: never an open redirect.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/esb/dashboard/"), !next.hasPrefix("/esb/dashboard/login"), !next.contains("//") else {
            return "/esb/dashboard/"
        }
        return next
    }

    private func signInPage(next: String?, error: String?, status: HTTPResponse.Status) -> Response {
        let token = DashboardSessions.token()
        let content = HTML.notice(error, error: true) + """
            <form method="post" action="/esb/dashboard/login" id="sign-in">
            <input type="hidden" name="csrf" value="\(token)">
            <input type="hidden" name="next" value="\(HTML.escape(next ?? ""))">
            <label>User name <input type="text" name="username" autocomplete="username" autofocus required></label>
            <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
            <button type="submit">Sign in</button>
            </form>
            <p class="hint">The [admin] credentials of server.conf.</p>
            """
        var response = Response(status: status, headers: [.contentType: "text/html; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: HTML.page(title: "Sign in", server: state.name, section: "", csrf: nil, content))))
        response.headers[.setCookie] = sessions.setCookie(DashboardSessions.loginCookieName, token)
        return response
    }

    // MARK: Pages

    private func overview(_ request: Request) async throws -> Response {
        let health = await state.health()
        let rows = health.components.sorted { $0.key < $1.key }.map { name, component in
            [HTML.escape(name), HTML.badge(component.status.rawValue), HTML.escape(component.detail ?? "")]
        }
        let units = try await deploymentRegistry.units()
        let content = """
            <p>Server status \(HTML.badge(health.status.rawValue)) · \(registry.all().count) services ·
            \(units.count) deployment units (\(units.filter { $0.status != .deployed }.count) not deployed)</p>
            <h2>Components</h2>\(HTML.table(["component", "status", "detail"], rows, id: "components"))
            <h2>Look up an async invocation</h2>
            <form method="get" action="/esb/dashboard/async" class="lookup"><label>cid <input type="text" name="cid" required></label>
            <button type="submit">Show</button></form>
            """
        return page(request, "Overview", "overview", content)
    }

    private func services(_ request: Request, invoked: String?) async throws -> Response {
        let all = registry.all()
        let rows = all.map { name, entry in [HTML.escape(name), HTML.escape(entry.unit)] }
        let options = all.map { "<option>\(HTML.escape($0.name))</option>" }.joined()
        let form = HTML.form(action: "/esb/dashboard/services/invoke", csrf: csrf(request), id: "invoke", submit: "Invoke", """
            <label>Service <select name="service">\(options)</select></label>
            <label>Payload <textarea name="payload"></textarea></label>
            """)
        return page(request, "Services", "services",
                    (invoked ?? "") + "<h2>Invoke</h2>" + form + "<h2>Deployed</h2>" + HTML.table(["service", "unit"], rows, id: "services"))
    }

    private func invoke(_ request: Request) async throws -> Response {
        var request = request
        let form = FormData(try await request.collectBody(upTo: 16 << 20))
        let name = form["service"] ?? ""
        let cid = ServiceInvoker.newCID()
        let result: String
        do {
            let response = try await invoker.invoke(name, request: ServiceRequest(
                payload: Data((form["payload"] ?? "").utf8), channel: "invoke", cid: cid))
            result = """
                <div id="invoke-result"><h2>\(HTML.escape(name)) answered \(response.status)</h2>
                <p class="hint">cid \(cid) · \(HTML.escape(response.contentType))</p><pre>\(HTML.escape(response.text))</pre></div>
                """
        } catch {
            result = "<div id=\"invoke-result\">" + HTML.notice("\(name) failed (cid \(cid)): \(error)", error: true) + "</div>"
        }
        return try await services(request, invoked: result)
    }

    private func deployments(_ request: Request) async throws -> Response {
        let rows = try await deploymentRegistry.units().map { unit in
            [HTML.escape(unit.name), HTML.escape(unit.kind.rawValue), HTML.badge(unit.status.rawValue), unit.version.map(String.init) ?? "",
             HTML.escape(String((unit.hash ?? "").prefix(12))),
             HTML.escape((unit.kind == .library ? unit.dependents : unit.services).joined(separator: ", ")),
             HTML.escape(unit.imports.joined(separator: ", ")),
             unit.updatedAt.ISO8601Format(),
             unit.error.map { "<details open><summary>diagnostics</summary><pre class=\"diagnostics\">\(HTML.escape($0))</pre></details>" } ?? ""]
        }
        return page(request, "Deployments", "deployments",
                    "<p class=\"hint\">Drop .swift files into the pickup directory (shared libraries into <code>lib/NAME/</code>), or <code>esb deploy FILE</code>.</p>"
                        + HTML.table(["unit", "kind", "status", "version", "hash", "services / dependents", "imports", "updated", "errors"], rows, id: "deployments"))
    }

    private func cluster(_ request: Request) async throws -> Response {
        let rows = try await AdminRoutes.clusterServers(state).map { server in
            [HTML.escape(server.name) + (server.name == state.name ? " <span class=\"hint\">(this server)</span>" : ""),
             HTML.badge(server.status.rawValue), HTML.escape(server.address), HTML.escape(server.version),
             server.startedAt?.ISO8601Format() ?? "", server.lastSeen?.ISO8601Format() ?? ""]
        }
        let cluster = state.config.cluster
        return page(request, "Cluster", "cluster",
                    "<p class=\"hint\">Cluster <code>\(HTML.escape(cluster.name))</code> on the \(HTML.escape(state.odb.engine.rawValue)) ODB. "
                        + "A server is down once it stopped or has not renewed its heartbeat for \(cluster.leaseSeconds) s ([cluster] lease_seconds); "
                        + "the others then take its async work over.</p>"
                        + HTML.table(["server", "status", "address", "version", "started", "last seen"], rows, id: "cluster"))
    }

    private func startup(_ request: Request) -> Response {
        let rows = startup.current.map { result in
            [String(result.line), HTML.escape(result.service), HTML.badge(result.status.rawValue),
             result.durationMs.map { "\($0) ms" } ?? "", HTML.escape(result.error ?? "")]
        }
        return page(request, "Startup services", "startup",
                    "<p class=\"hint\">[startup_services] of server.conf, at the last start.</p>"
                        + HTML.table(["line", "service", "status", "duration", "error"], rows, id: "startup"))
    }

    private func asyncLookup(_ request: Request) async throws -> Response {
        let cid = request.uri.queryParameters["cid"].map(String.init) ?? ""
        guard let record = try await asyncStore.record(cid: cid) else {
            return page(request, "Async invocation", "overview", status: .notFound,
                        HTML.notice("No async invocation with cid '\(cid)' (never accepted, or finished and pruned).", error: true))
        }
        let fields: [(String, String)] = [
            ("cid", record.cid), ("kind", record.kind.rawValue), ("status", record.status.rawValue), ("target", record.target),
            ("source", record.source ?? ""), ("attempts", "\(record.attempts) of at most \(record.repeats + 1)"),
            ("next run", record.nextRunAt.map(AsyncRecord.timestamp) ?? ""), ("callback", record.callback ?? ""),
            ("callback status", record.callbackStatus.rawValue), ("callback deliveries", String(record.callbackDeliveries)),
            ("created", AsyncRecord.timestamp(record.createdAt)), ("finished", record.finishedAt.map(AsyncRecord.timestamp) ?? ""),
        ]
        let errors = record.errors.enumerated().map { ["attempt \($0.offset + 1)", HTML.escape($0.element)] }
        return page(request, "Async invocation", "overview",
                    HTML.table(["field", "value"], fields.map { [HTML.escape($0.0), HTML.escape($0.1)] }, id: "async")
                        + "<h2>Errors</h2>" + HTML.table(["attempt", "error"], errors))
    }

    // MARK: enmasse

    private func enmasse(_ request: Request, outcome: String?) -> Response {
        let importForm = HTML.form(action: "/esb/dashboard/enmasse/import", csrf: csrf(request), id: "enmasse-import", submit: "Import", """
            <label>File <input type="file" id="enmasse-file" accept=".yaml,.yml,.json"></label>
            <label>Contents <textarea name="file" id="enmasse-text" placeholder="def_amqp:&#10;  - name: …"></textarea></label>
            <label>Replace existing <span><input type="hidden" name="replace" value="false"><input type="checkbox" name="replace" value="true"> edit objects that already exist in place</span></label>
            """)
        let content = (outcome ?? "") + """
            <h2>Export</h2>
            <form method="get" action="/esb/dashboard/enmasse/export" id="enmasse-export">
            <label>Format <select name="format"><option>yaml</option><option>json</option></select></label>
            <label>Passwords <span><input type="checkbox" name="include_secrets" value="true"> include them (decrypted)</span></label>
            <button type="submit">Download</button></form>
            <h2>Import</h2><p class="hint">The whole file is checked first and applied in one transaction: all or nothing.</p>
            \(importForm)
            """
        return page(request, "enmasse", "enmasse", content)
    }

    private func enmasseExport(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        let format = try EnmasseRoutes.format(query["format"].map(String.init))
        let text = try await EnmasseRoutes.export(objects, format: format, includeSecrets: query["include_secrets"] == "true")
        var response = Response(status: .ok, headers: [.contentType: format.contentType + "; charset=utf-8"],
                                body: .init(byteBuffer: ByteBuffer(string: text)))
        response.headers[.contentDisposition] = "attachment; filename=\"enmasse-\(state.name).\(format.rawValue)\""
        return response
    }

    private func enmasseImport(_ request: Request) async throws -> Response {
        var request = request
        let form = FormData(try await request.collectBody(upTo: 16 << 20))
        let outcome: String
        do {
            let result = try await EnmasseRoutes.importFile(objects, text: form["file"] ?? "", name: "the file",
                                                            replace: form["replace"] == "true")
            let lines = result.created.map { "created \($0)" } + result.updated.map { "updated \($0)" }
                + result.warnings.map { "warning: \($0)" }
            outcome = "<div id=\"enmasse-result\">" + HTML.notice("Imported: \(result.created.count) created, \(result.updated.count) updated.")
                + "<pre>\(HTML.escape(lines.joined(separator: "\n")))</pre></div>"
        } catch let error as APIError {
            outcome = "<div id=\"enmasse-result\">" + HTML.notice(error.message, error: true) + "</div>"
        }
        return enmasse(request, outcome: outcome)
    }
}
