import Foundation
import Hummingbird

/// Server-rendered HTML for the dashboard: escaping, a few building blocks, the page shell.
/// Nothing is fetched from elsewhere: the style sheet and the little script are inline.
enum HTML {
    /// Text safe inside elements and double-quoted attributes.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// A path segment for links (object names may hold any character but `/`).
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    static func table(_ headers: [String], _ rows: [[String]], id: String? = nil) -> String {
        let head = headers.map { "<th>\(escape($0))</th>" }.joined()
        let body = rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined(separator: "\n")
        let idAttribute = id.map { " id=\"\(escape($0))\"" } ?? ""
        return rows.isEmpty ? "<p class=\"empty\">None yet.</p>"
            : "<table\(idAttribute)><thead><tr>\(head)</tr></thead><tbody>\n\(body)\n</tbody></table>"
    }

    /// A status word with its colour.
    static func badge(_ status: String) -> String {
        let tone = switch status {
        case "ok", "deployed", "done", "connected", "confirmed", "delivered": "good"
        case "failed", "quarantined", "degraded", "backing_off", "timed_out", "interrupted": "bad"
        default: "neutral"
        }
        return "<span class=\"badge \(tone)\">\(escape(status))</span>"
    }

    /// A POST form carrying the session's CSRF token; `confirm` is asked before it is sent.
    /// The question goes into a `data-confirm` attribute (escaped as text) that the one static
    /// script reads: no value is ever written into inline script.
    static func form(action: String, csrf: String, id: String? = nil, submit: String, danger: Bool = false,
                     confirm: String? = nil, _ fields: String) -> String {
        let idAttribute = id.map { " id=\"\(escape($0))\"" } ?? ""
        let confirmAttribute = confirm.map { " data-confirm=\"\(escape($0))\"" } ?? ""
        return """
            <form method="post" action="\(escape(action))"\(idAttribute)\(confirmAttribute)>
            <input type="hidden" name="csrf" value="\(escape(csrf))">
            \(fields)
            <button type="submit"\(danger ? " class=\"danger\"" : "")>\(escape(submit))</button>
            </form>
            """
    }

    static func notice(_ text: String?, error: Bool = false) -> String {
        guard let text, !text.isEmpty else { return "" }
        return "<div class=\"\(error ? "error" : "notice")\" role=\"\(error ? "alert" : "status")\">\(escape(text))</div>"
    }

    /// The page shell: title, navigation, sign-out, content.
    static func page(title: String, server: String, section: String, csrf: String?, _ content: String) -> String {
        let links = [("overview", "/esb/dashboard/", "Overview"), ("services", "/esb/dashboard/services", "Services"),
                     ("deployments", "/esb/dashboard/deployments", "Deployments"), ("startup", "/esb/dashboard/startup", "Startup"),
                     ("def_amqp", "/esb/dashboard/objects/def_amqp", "AMQP definitions"),
                     ("outconn_amqp", "/esb/dashboard/objects/outconn_amqp", "Outgoing AMQP"),
                     ("outconn_plain_http", "/esb/dashboard/objects/outconn_plain_http", "Outgoing HTTP"),
                     ("channel_plain_http", "/esb/dashboard/objects/channel_plain_http", "HTTP channels"),
                     ("channel_amqp", "/esb/dashboard/objects/channel_amqp", "AMQP channels"),
                     ("def_sec", "/esb/dashboard/objects/def_sec", "Basic auth"),
                     ("scheduler", "/esb/dashboard/objects/scheduler", "Scheduler"),
                     ("enmasse", "/esb/dashboard/enmasse", "enmasse"), ("cluster", "/esb/dashboard/cluster", "Cluster")]
        let nav = links.map { key, href, label in
            "<a href=\"\(href)\"\(key == section ? " class=\"active\"" : "")>\(escape(label))</a>"
        }.joined()
        let signOut = csrf.map { form(action: "/esb/dashboard/logout", csrf: $0, id: "sign-out", submit: "Sign out", "") } ?? ""
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · \(escape(server)) · SwiftESB</title>
            <style>\(style)</style>
            <script src="/esb/dashboard/static/dashboard.js" defer></script></head>
            <body><header><strong>SwiftESB</strong> <span class="server">\(escape(server))</span>\(csrf == nil ? "" : "<nav>\(nav)</nav>")\(signOut)</header>
            <main><h1>\(escape(title))</h1>
            \(content)
            </main></body></html>
            """
    }

    /// The dashboard's only script, served from `/esb/dashboard/static/dashboard.js` (the
    /// Content-Security-Policy allows no inline script): confirmations and the enmasse file picker.
    static let script = """
        document.addEventListener('submit', function (event) {
          var question = event.target.getAttribute && event.target.getAttribute('data-confirm');
          if (question && !window.confirm(question)) { event.preventDefault(); }
        }, true);
        document.addEventListener('DOMContentLoaded', function () {
          var picker = document.getElementById('enmasse-file');
          if (!picker) { return; }
          picker.addEventListener('change', function (event) {
            var file = event.target.files[0];
            if (!file) { return; }
            var reader = new FileReader();
            reader.onload = function () { document.getElementById('enmasse-text').value = reader.result; };
            reader.readAsText(file);
          });
        });
        """

    static let style = """
        *{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f5f6f8}
        header{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem;padding:.6rem 1.2rem;background:#1d2738;color:#fff}
        header .server{color:#9fb3d1}header nav{display:flex;flex-wrap:wrap;gap:.2rem;flex:1}
        header nav a{color:#d6e0f0;text-decoration:none;padding:.25rem .55rem;border-radius:4px}
        header nav a.active,header nav a:hover{background:#34466a;color:#fff}header form{margin:0}
        main{max-width:1200px;margin:0 auto;padding:1rem 1.2rem 3rem}h1{font-size:1.45rem;margin:.6rem 0 1rem}
        h2{font-size:1.1rem;margin:1.6rem 0 .6rem}table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
        th,td{text-align:left;padding:.4rem .55rem;border-bottom:1px solid #e2e5ea;vertical-align:top}th{background:#eef1f5}
        td pre,pre{white-space:pre-wrap;word-break:break-word;background:#0f1420;color:#e4e9f2;padding:.6rem;border-radius:4px;font-size:.82rem;max-height:28rem;overflow:auto}
        form{background:#fff;padding:.8rem 1rem;border:1px solid #e2e5ea;border-radius:6px;margin:.6rem 0}
        form.inline,header form{display:inline;background:none;border:0;padding:0}
        label{display:grid;grid-template-columns:13rem 1fr;align-items:center;gap:.6rem;margin:.35rem 0}
        input[type=text],input[type=number],input[type=password],select,textarea{width:100%;padding:.35rem .45rem;border:1px solid #c5ccd6;border-radius:4px;font:inherit}
        textarea{min-height:8rem;font-family:ui-monospace,monospace}
        button{background:#2f5bd3;color:#fff;border:0;border-radius:4px;padding:.4rem .9rem;font:inherit;cursor:pointer;margin-top:.4rem}
        button.danger{background:#c0392b}header button{background:#34466a;margin:0}
        .badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;background:#e3e7ee}
        .badge.good{background:#d7f3df;color:#17622e}.badge.bad{background:#fbdcd8;color:#8c1d12}
        .notice,.error{padding:.6rem .8rem;border-radius:4px;margin:.6rem 0}.notice{background:#e3f0ff}.error{background:#fde2df;white-space:pre-wrap}
        .empty{color:#6b7482}.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(24rem,1fr));gap:1rem}
        .hint{color:#6b7482;font-size:.85rem}
        """
}
