import ESBCore
import ESBService
import Foundation
import Hummingbird
import NIOFoundationCompat

/// Dashboard pages for every kind of configuration object, generated from its fields: a list
/// with a create form, and per object an edit form, delete, password change and, for
/// outgoing AMQP connections, a test publish and the live pool state, for AMQP channels each
/// consumer's live state. They go through the
/// same ``ObjectStore`` as the API and enmasse, so all three agree.
struct DashboardObjectPages {
    let state: ServerState
    let objects: ObjectStore
    let amqp: AMQPOutconns
    let amqpChannels: AMQPChannels
    let scheduler: Scheduler
    let sessions: DashboardSessions

    /// The kinds with pages: those of the generic API routes, and scheduled jobs.
    static let kinds = ObjectRoutes.paths.map(\.0) + [ObjectKinds.scheduler]

    func register(on dashboard: RouterGroup<ESBRequestContext>) {
        dashboard.get("objects/{kind}") { request, context in
            try await list(request, kind: try kind(context), error: nil, input: [:])
        }
        dashboard.post("objects/{kind}") { request, context in
            let kind = try kind(context)
            let form = try await Self.form(request)
            do {
                let created = try await objects.create(kind, Self.fields(form, kind: kind, includeName: true))
                return Self.redirect(kind, notice: "Created \(kind.label) '\(created["name"]?.string ?? "")'.")
            } catch let error as ObjectError {
                return try await list(request, kind: kind, error: error.message, input: form.values, status: error.status)
            }
        }
        dashboard.get("objects/{kind}/{name}") { request, context in
            try await edit(request, kind: try kind(context), name: try context.parameters.decoded("name"), message: nil)
        }
        dashboard.post("objects/{kind}/{name}") { request, context in
            let kind = try kind(context), name = try context.parameters.decoded("name")
            let form = try await Self.form(request)
            do {
                _ = try await objects.update(kind, name, Self.fields(form, kind: kind, includeName: false))
                return Self.redirect(kind, name: name, notice: "Saved.")
            } catch let error as ObjectError {
                return try await edit(request, kind: kind, name: name, message: (error.message, true), input: form.values,
                                      status: error.status)
            }
        }
        dashboard.post("objects/{kind}/{name}/delete") { request, context in
            let kind = try kind(context), name = try context.parameters.decoded("name")
            do {
                try await objects.delete(kind, name)
                return Self.redirect(kind, notice: "Deleted \(kind.label) '\(name)'.")
            } catch let error as ObjectError {
                return try await edit(request, kind: kind, name: name, message: (error.message, true), status: error.status)
            }
        }
        dashboard.post("objects/{kind}/{name}/password") { request, context in
            let kind = try kind(context), name = try context.parameters.decoded("name")
            let form = try await Self.form(request)
            let first = form["password1"] ?? "", second = form["password2"] ?? ""
            guard let secretField = kind.secretField, !first.isEmpty, first == second else {
                return try await edit(request, kind: kind, name: name, message: ("The two passwords must match and not be empty.", true),
                                      status: .unprocessableContent)
            }
            do {
                try await objects.setSecret(kind, name, first)
                return Self.redirect(kind, name: name, notice: "The \(secretField) was changed.")
            } catch let error as ObjectError {
                return try await edit(request, kind: kind, name: name, message: (error.message, true), status: error.status)
            }
        }
        dashboard.post("objects/{kind}/{name}/execute") { request, context in
            guard try kind(context).name == ObjectKinds.scheduler.name else {
                throw HTTPError(.notFound, message: "only scheduled jobs run on demand")
            }
            let name = try context.parameters.decoded("name")
            do {
                // A redirect: reloading the page does not run the job again.
                return Self.redirect(ObjectKinds.scheduler, name: name, notice: "Started a run now (cid \(try await scheduler.execute(name))).")
            } catch let error as ObjectError {
                return try await edit(request, kind: ObjectKinds.scheduler, name: name, message: (error.message, true), status: error.status)
            }
        }
        dashboard.post("objects/{kind}/{name}/active") { request, context in
            guard try kind(context).name == ObjectKinds.scheduler.name else {
                throw HTTPError(.notFound, message: "only scheduled jobs pause")
            }
            let name = try context.parameters.decoded("name")
            let active = try await Self.form(request)["is_active"] == "true"
            do {
                _ = try await objects.update(ObjectKinds.scheduler, name, ["is_active": .bool(active)])
                return Self.redirect(ObjectKinds.scheduler, name: name, notice: active ? "Resumed." : "Paused.")
            } catch let error as ObjectError {
                return try await edit(request, kind: ObjectKinds.scheduler, name: name, message: (error.message, true), status: error.status)
            }
        }
        // Under {kind}, not a fixed `outconn_amqp`: a fixed segment beside {kind} would hide
        // the other routes for that kind in the trie router.
        dashboard.post("objects/{kind}/{name}/publish") { request, context in
            guard try kind(context).name == ObjectKinds.amqpOutconn.name else {
                throw HTTPError(.notFound, message: "only outgoing AMQP connections publish")
            }
            let name = try context.parameters.decoded("name")
            let form = try await Self.form(request)
            let cid = ServiceInvoker.newCID()
            let message: (String, Bool)
            do {
                let confirmed = try await amqp.send(
                    Data((form["payload"] ?? "").utf8), outconn: name, exchange: form["exchange"] ?? "",
                    routingKey: form["routing_key"] ?? "", properties: AMQPProperties(), headers: [:], cid: cid)
                message = ("Published (cid \(cid)): \(confirmed ? "confirmed by the broker" : "written to the socket (confirms off)").", false)
            } catch {
                message = ("Publish failed (cid \(cid)): \(error)", true)
            }
            return try await edit(request, kind: ObjectKinds.amqpOutconn, name: name, message: message)
        }
    }

    private func kind(_ context: ESBRequestContext) throws -> ObjectKind {
        let name = try context.parameters.decoded("kind")
        guard let kind = Self.kinds.first(where: { $0.name == name }) else {
            throw HTTPError(.notFound, message: "no object kind '\(name)'")
        }
        return kind
    }

    private func page(_ request: Request, _ title: String, _ section: String, status: HTTPResponse.Status = .ok,
                      _ content: String) -> Response {
        DashboardRoutes.page(request, state: state, sessions: sessions, title: title, section: section, status: status, content)
    }

    private static func form(_ request: Request) async throws -> FormData {
        var request = request
        return FormData(try await request.collectBody(upTo: 16 << 20))
    }

    private static func redirect(_ kind: ObjectKind, name: String? = nil, notice: String) -> Response {
        let path = "/esb/dashboard/objects/\(kind.name)" + (name.map { "/" + HTML.segment($0) } ?? "")
        return Response.redirect(to: path + "?notice=" + FormData.encode(notice), type: .found)
    }

    // MARK: Pages

    private func list(_ request: Request, kind: ObjectKind, error: String?, input: [String: String],
                      status: HTTPResponse.Status = .ok) async throws -> Response {
        let objects = try await objects.list(kind)
        let shown = Array(kind.fields.prefix(kind.name == ObjectKinds.scheduler.name ? 3 : 5))
        var headers = ["name"] + shown.map(\.name)
        var extra: [String: [String]] = [:]
        if kind.name == ObjectKinds.scheduler.name {
            headers += ["next run", "last run"]
            for job in try await scheduler.list() {
                let name = job.fields["name"]?.string ?? ""
                extra[name] = [job.nextRunAt.map(JobDefinition.formatDate) ?? "(none)",
                               job.lastRun.map { HTML.badge($0.status.rawValue) + " " + HTML.escape(JobDefinition.formatDate($0.startedAt)) } ?? ""]
            }
        }
        let rows = objects.map { object -> [String] in
            let name = object["name"]?.string ?? ""
            return ["<a href=\"/esb/dashboard/objects/\(kind.name)/\(HTML.segment(name))\">\(HTML.escape(name))</a>"]
                + shown.map { HTML.escape(Self.display(object[$0.name])) } + (extra[name] ?? [])
        }
        let create = HTML.form(action: "/esb/dashboard/objects/\(kind.name)", csrf: csrf(request), id: "create", submit: "Create",
                               try await fieldInputs(kind, values: [:], input: input, creating: true))
        let content = HTML.notice(request.uri.queryParameters["notice"].map(String.init)) + HTML.notice(error, error: true)
            + HTML.table(headers, rows, id: "objects") + "<h2>Create</h2>" + create
        return page(request, Self.title(kind), kind.name, status: status, content)
    }

    private func edit(_ request: Request, kind: ObjectKind, name: String, message: (String, Bool)?, input: [String: String] = [:],
                      status: HTTPResponse.Status = .ok) async throws -> Response {
        let object: ObjectFields
        do {
            object = try await objects.get(kind, name)
        } catch let error as ObjectError {
            return page(request, Self.title(kind), kind.name, status: .notFound, HTML.notice(error.message, error: true))
        }
        let base = "/esb/dashboard/objects/\(kind.name)/\(HTML.segment(name))"
        var content = HTML.notice(request.uri.queryParameters["notice"].map(String.init))
            + (message.map { HTML.notice($0.0, error: $0.1) } ?? "")
        if kind.name == ObjectKinds.amqpOutconn.name { content += poolState(name) + publishForm(request, base: base) }
        if kind.name == ObjectKinds.amqpChannel.name { content += consumerState(name) }
        if kind.name == ObjectKinds.scheduler.name { content += try await jobState(request, name: name, base: base, object: object) }
        content += "<h2>Edit</h2>" + HTML.form(action: base, csrf: csrf(request), id: "edit", submit: "Save",
                                               try await fieldInputs(kind, values: object, input: input, creating: false))
        if let secretField = kind.secretField {
            content += "<h2>Change the \(secretField)</h2>" + HTML.form(action: base + "/password", csrf: csrf(request), id: "password",
                                                                       submit: "Change", """
                <label>New \(secretField) <input type="password" name="password1" autocomplete="new-password"></label>
                <label>Again <input type="password" name="password2" autocomplete="new-password"></label>
                """)
        }
        content += "<h2>Delete</h2>" + HTML.form(action: base + "/delete", csrf: csrf(request), id: "delete", submit: "Delete",
                                                 danger: true, confirm: "Delete \(kind.label) '\(name)'?", "")
        return page(request, "\(Self.title(kind)): \(name)", kind.name, status: status, content)
    }

    private func poolState(_ name: String) -> String {
        guard let component = amqp.health()["amqp.\(name)"] else { return "" }
        let rows = (component.pool?.connections ?? []).map { connection in
            [String(connection.index), HTML.badge(connection.status), String(connection.inFlight),
             String(connection.reconnects), HTML.escape(connection.lastError ?? "")]
        }
        return "<h2>Pool</h2><p id=\"pool-status\">\(HTML.badge(component.status.rawValue)) \(HTML.escape(component.detail ?? ""))</p>"
            + HTML.table(["connection", "status", "in flight", "reconnects", "last error"], rows, id: "pool")
    }

    /// Each consumer's state as of this request (reload the page to follow it).
    private func consumerState(_ name: String) -> String {
        guard let component = amqpChannels.state(name) else { return "" }
        let rows = (component.channel?.consumers ?? []).map { consumer in
            [String(consumer.index), HTML.badge(consumer.status), String(consumer.inFlight), String(consumer.consumed),
             String(consumer.handled), String(consumer.failed), String(consumer.rejected), String(consumer.reconnects),
             HTML.escape(consumer.lastError ?? "")]
        }
        return "<h2>Consumers</h2><p id=\"consumer-status\">\(HTML.badge(component.status.rawValue)) \(HTML.escape(component.detail ?? ""))</p>"
            + HTML.table(["consumer", "status", "in flight", "consumed", "handled", "failed", "rejected", "reconnects", "last error"],
                         rows, id: "consumers")
    }

    /// A job's next run, "run now", pause or resume, and its runs, newest first.
    private func jobState(_ request: Request, name: String, base: String, object: ObjectFields) async throws -> String {
        let (job, runs) = try await scheduler.job(name, runs: Scheduler.keptRuns)
        let active = object["is_active"] != .bool(false)
        var html = "<h2>Schedule</h2><p id=\"job-state\">Next run: \(HTML.escape(job.nextRunAt.map(JobDefinition.formatDate) ?? "(none)"))"
            + (job.running ? " · " + HTML.badge("running") : "") + "</p>"
        html += HTML.form(action: base + "/execute", csrf: csrf(request), id: "execute", submit: "Run now", "")
        html += HTML.form(action: base + "/active", csrf: csrf(request), id: "pause", submit: active ? "Pause" : "Resume",
                          "<input type=\"hidden\" name=\"is_active\" value=\"\(active ? "false" : "true")\">")
        let rows = runs.map { run in
            [HTML.escape(JobDefinition.formatDate(run.scheduledAt)), HTML.escape(JobDefinition.formatDate(run.startedAt)),
             run.durationMS.map(String.init) ?? "", HTML.badge(run.status.rawValue), HTML.escape(run.error ?? ""),
             HTML.escape(run.cid), HTML.escape(run.server)]
        }
        return html + "<h2>Runs</h2>" + HTML.table(["scheduled at", "started at", "ms", "status", "error", "cid", "server"], rows, id: "runs")
    }

    private func publishForm(_ request: Request, base: String) -> String {
        "<h2>Test publish</h2>" + HTML.form(action: base + "/publish", csrf: csrf(request), id: "publish", submit: "Publish", """
            <label>Exchange <input type="text" name="exchange" placeholder="(default exchange)"></label>
            <label>Routing key <input type="text" name="routing_key" required></label>
            <label>Payload <textarea name="payload"></textarea></label>
            """)
    }

    private func csrf(_ request: Request) -> String { sessions.session(for: request)?.csrf ?? "" }

    static func title(_ kind: ObjectKind) -> String {
        switch kind.name {
        case ObjectKinds.amqpDefinition.name: "AMQP definitions"
        case ObjectKinds.amqpOutconn.name: "Outgoing AMQP connections"
        case ObjectKinds.httpChannel.name: "HTTP channels"
        case ObjectKinds.amqpChannel.name: "AMQP channels"
        case ObjectKinds.httpOutconn.name: "Outgoing HTTP connections"
        case ObjectKinds.basicAuth.name: "Basic-auth definitions"
        case ObjectKinds.scheduler.name: "Scheduler"
        default: kind.label
        }
    }

    static func display(_ value: FieldValue?) -> String {
        switch value {
        case .string(let text)?: text
        case .int(let number)?: String(number)
        case .bool(let flag)?: flag ? "yes" : "no"
        case .null?, nil: ""
        }
    }

    // MARK: Forms from fields

    /// One input per field: checkboxes for booleans, choices for allowed values and
    /// references, numbers for integers; `input` (a refused form) wins over `values`.
    private func fieldInputs(_ kind: ObjectKind, values: ObjectFields, input: [String: String], creating: Bool) async throws -> String {
        var html = ""
        if creating {
            html += "<label>name <input type=\"text\" name=\"name\" required value=\"\(HTML.escape(input["name"] ?? ""))\"></label>\n"
        }
        for field in kind.fields {
            let current = input[field.name] ?? Self.display(values[field.name] ?? (creating ? field.defaultValue : nil))
            let id = "field-\(field.name)"
            var control: String
            if field.type == .bool {
                let checked = input[field.name].map { $0 == "true" } ?? ((values[field.name] ?? field.defaultValue) == .bool(true))
                control = "<span><input type=\"hidden\" name=\"\(field.name)\" value=\"false\"><input type=\"checkbox\" id=\"\(id)\" name=\"\(field.name)\" value=\"true\"\(checked ? " checked" : "")></span>"
            } else if let choices = try await choices(field) {
                let options = choices.map { choice in
                    "<option value=\"\(HTML.escape(choice))\"\(choice == current ? " selected" : "")>\(HTML.escape(choice.isEmpty ? "(any)" : choice))</option>"
                }.joined()
                control = "<select id=\"\(id)\" name=\"\(field.name)\">\(options)</select>"
            } else if kind.name == ObjectKinds.scheduler.name && field.name == "extra" {
                // Multi-line text (a payload, Zato's list of lines) survives an edit.
                control = "<textarea id=\"\(id)\" name=\"\(field.name)\">\(HTML.escape(current))</textarea>"
            } else {
                let type = field.type == .int ? "number" : "text"
                let required = field.defaultValue == nil ? " required" : ""
                let hint = field.defaultValue == .null ? " placeholder=\"(none)\"" : ""
                control = "<input type=\"\(type)\" id=\"\(id)\" name=\"\(field.name)\" value=\"\(HTML.escape(current))\"\(required)\(hint)>"
            }
            html += "<label>\(field.name) \(control)</label>\n"
        }
        if creating, let secretField = kind.secretField {
            html += "<label>\(secretField) <input type=\"password\" name=\"\(secretField)\" autocomplete=\"new-password\"></label>\n"
        }
        return html
    }

    private func choices(_ field: ObjectKind.Field) async throws -> [String]? {
        if let allowed = field.allowed { return allowed }
        guard let target = field.references, let kind = Self.kinds.first(where: { $0.name == target }) else { return nil }
        let names = try await objects.list(kind).compactMap { $0["name"]?.string }
        return (field.defaultValue == .string("none") ? ["none"] : []) + names
    }

    /// The form's values as object fields, typed by the kind: empty optional fields are null.
    static func fields(_ form: FormData, kind: ObjectKind, includeName: Bool) -> ObjectFields {
        var fields: ObjectFields = [:]
        if includeName, let name = form["name"] { fields["name"] = .string(name) }
        for field in kind.fields {
            guard let text = form[field.name] else { continue }
            switch field.type {
            case .bool: fields[field.name] = .bool(text == "true")
            case .int: fields[field.name] = text.isEmpty && field.defaultValue == .null ? .null : Int(text).map(FieldValue.int) ?? .string(text)
            case .string: fields[field.name] = text.isEmpty && field.defaultValue == .null ? .null : .string(text)
            }
        }
        if includeName, let secretField = kind.secretField, let secret = form[secretField], !secret.isEmpty {
            fields[secretField] = .string(secret)
        }
        return fields
    }
}
