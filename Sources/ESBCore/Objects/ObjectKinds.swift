import Foundation

/// The kinds of configuration object the server knows, keyed as in enmasse files.
public enum ObjectKinds {
    /// `def_sec`: HTTP basic-auth credentials for channels and outgoing HTTP.
    public static let basicAuth = ObjectKind(
        name: "def_sec", label: "basic-auth definition",
        fields: [
            .init("username", .string, check: ObjectKind.Field.nonEmpty),
            .init("realm", .string, default: .string("SwiftESB")),
            .init("is_active", .bool, default: .bool(true)),
        ],
        secretField: "password")

    /// `channel_plain_http`: a URL path (with `{param}` segments) that invokes a service.
    public static let httpChannel = ObjectKind(
        name: "channel_plain_http", label: "HTTP channel",
        fields: [
            .init("url_path", .string, check: { value in
                guard let path = value.string, path.hasPrefix("/") else { return "must start with '/'" }
                if path == "/metrics" || path.hasPrefix("/esb/") || path == "/esb" { return "is reserved for the server" }
                if let problem = ChannelPath.validate(path) { return problem }
                return nil
            }),
            .init("method", .string, default: .string(""), allowed: ["", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
            .init("service", .string, check: ObjectKind.Field.nonEmpty),
            .init("data_format", .string, default: .string("json"), allowed: ["json", "xml", "text"]),
            .init("security", .string, default: .string("none"), references: "def_sec"),
            .init("is_active", .bool, default: .bool(true)),
            // Null: `[main] max_body_bytes` applies.
            .init("max_body_bytes", .int, default: .null, check: ObjectKind.Field.range(1...(1 << 30))),
        ])

    /// `def_amqp`: where a broker is and how to log in.
    public static let amqpDefinition = ObjectKind(
        name: "def_amqp", label: "AMQP definition",
        fields: [
            .init("host", .string, check: ObjectKind.Field.nonEmpty),
            .init("port", .int, default: .int(5672), check: ObjectKind.Field.range(1...65535)),
            .init("vhost", .string, default: .string("/"), check: ObjectKind.Field.nonEmpty),
            .init("username", .string, check: ObjectKind.Field.nonEmpty),
            .init("frame_max", .int, default: .int(131_072), check: ObjectKind.Field.range(4096...2_147_483_647)),
            .init("heartbeat", .int, default: .int(30), check: ObjectKind.Field.range(0...65535)),
            .init("connect_timeout_ms", .int, default: .int(5000), check: ObjectKind.Field.range(1...600_000)),
            .init("tls", .bool, default: .bool(false)),
            .init("tls_ca_path", .string, default: .null),
            .init("tls_verify", .bool, default: .bool(true)),
        ],
        secretField: "password")

    /// `outconn_amqp`: a pool of confirmed publishing connections with message defaults.
    public static let amqpOutconn = ObjectKind(
        name: "outconn_amqp", label: "outgoing AMQP connection",
        fields: [
            .init("def", .string, references: "def_amqp", check: { value in
                value.string.map { $0.isEmpty || $0 == "none" } ?? true ? "must name an AMQP definition" : nil
            }),
            .init("is_active", .bool, default: .bool(true)),
            .init("delivery_mode", .int, default: .int(2), check: ObjectKind.Field.range(1...2)),
            .init("priority", .int, default: .int(5), check: ObjectKind.Field.range(0...9)),
            .init("content_type", .string, default: .null),
            .init("content_encoding", .string, default: .null),
            .init("expiration", .int, default: .null, check: ObjectKind.Field.range(0...Int(Int32.max))),
            .init("user_id", .string, default: .null),
            .init("app_id", .string, default: .null),
            .init("pool_size", .int, default: .int(4), check: ObjectKind.Field.range(1...64)),
            .init("confirm", .bool, default: .bool(true)),
            .init("mandatory", .bool, default: .bool(true)),
            .init("confirm_timeout_ms", .int, default: .int(5000), check: ObjectKind.Field.range(1...600_000)),
            .init("acquire_timeout_ms", .int, default: .int(5000), check: ObjectKind.Field.range(0...600_000)),
        ])

    /// `outconn_plain_http`: another system's HTTP API, called by services through
    /// `context.outgoing.http["name"]` over pooled keep-alive connections.
    public static let httpOutconn = ObjectKind(
        name: "outconn_plain_http", label: "outgoing HTTP connection",
        fields: [
            .init("address", .string, check: { value in
                guard let text = value.string, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                      ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty else {
                    return "must be scheme://host[:port], with scheme http or https"
                }
                if !url.path.isEmpty && url.path != "/" || url.query != nil { return "must not hold a path or query (use url_path)" }
                if url.user != nil || url.password != nil {
                    return "must not carry user:password@ (credentials in an address end up in logs; name a basic-auth definition in security)"
                }
                return nil
            }),
            .init("url_path", .string, default: .string("/"), check: { value in
                guard let path = value.string, path.hasPrefix("/") else { return "must start with '/'" }
                return ChannelPath.validate(path)
            }),
            .init("method", .string, default: .string("GET"), allowed: ["GET", "POST", "PUT", "PATCH", "DELETE"]),
            .init("data_format", .string, default: .string("json"), allowed: ["json", "xml", "text"]),
            .init("security", .string, default: .string("none"), references: "def_sec"),
            .init("timeout_ms", .int, default: .int(10_000), check: ObjectKind.Field.range(1...600_000)),
            .init("pool_size", .int, default: .int(8), check: ObjectKind.Field.range(1...256)),
            .init("is_active", .bool, default: .bool(true)),
            // Redirects could carry a request, and its credentials, to another host.
            .init("follow_redirects", .bool, default: .bool(false)),
        ])

    /// `channel_amqp`: consumers of a queue that invoke a service per message and ack it
    /// once the service returned. The ranges keep `max_attempts × retry_delay_ms` (19 min at
    /// most) below RabbitMQ's default `consumer_timeout` of 30 min.
    public static let amqpChannel = ObjectKind(
        name: "channel_amqp", label: "AMQP channel",
        fields: [
            .init("def", .string, references: "def_amqp", check: { value in
                value.string.map { $0.isEmpty || $0 == "none" } ?? true ? "must name an AMQP definition" : nil
            }),
            .init("queue", .string, check: { value in
                guard let queue = value.string, !queue.isEmpty else { return "must not be empty" }
                return queue.utf8.count > 255 ? "must be at most 255 bytes" : nil
            }),
            .init("service", .string, check: ObjectKind.Field.nonEmpty),
            .init("is_active", .bool, default: .bool(true)),
            .init("consumers", .int, default: .int(1), check: ObjectKind.Field.range(1...64)),
            .init("prefetch", .int, default: .int(10), check: ObjectKind.Field.range(1...65535)),
            .init("max_attempts", .int, default: .int(3), check: ObjectKind.Field.range(1...20)),
            .init("retry_delay_ms", .int, default: .int(1000), check: ObjectKind.Field.range(0...60_000)),
            .init("data_format", .string, default: .string("text"), allowed: ["text", "json", "xml"]),
        ])

    /// `scheduler`: a job that invokes a service once, at an interval or on a cron schedule,
    /// with Zato's field names (INTERFACES.md §11).
    public static let scheduler = ObjectKind(
        name: "scheduler", label: "scheduled job",
        fields: [
            .init("service", .string, check: ObjectKind.Field.nonEmpty),
            .init("is_active", .bool, default: .bool(true)),
            .init("job_type", .string, allowed: ["one_time", "interval_based", "cron_style"]),
            .init("start_date", .string, default: .null, check: { value in
                guard let text = value.string else { return nil }
                return JobDefinition.parseDate(text) == nil
                    ? "is not an ISO 8601 date and time (2025-01-31T08:00:00+01:00; no offset means UTC)" : nil
            }, coerce: { $0.string?.trimmingCharacters(in: .whitespaces).isEmpty == true ? .null : $0 }),
            .init("weeks", .int, default: .null, check: ObjectKind.Field.range(0...10_000), coerce: ObjectKind.Field.lenientInt),
            .init("days", .int, default: .null, check: ObjectKind.Field.range(0...100_000), coerce: ObjectKind.Field.lenientInt),
            .init("hours", .int, default: .null, check: ObjectKind.Field.range(0...1_000_000), coerce: ObjectKind.Field.lenientInt),
            .init("minutes", .int, default: .null, check: ObjectKind.Field.range(0...10_000_000), coerce: ObjectKind.Field.lenientInt),
            .init("seconds", .int, default: .null, check: ObjectKind.Field.range(0...100_000_000), coerce: ObjectKind.Field.lenientInt),
            .init("repeats", .int, default: .null, check: ObjectKind.Field.range(1...Int(Int32.max)), coerce: ObjectKind.Field.lenientInt),
            .init("cron_definition", .string, default: .null, check: { value in
                guard let text = value.string, !text.isEmpty else { return nil }
                do throws(CronExpression.ParseError) {
                    _ = try CronExpression(text)
                    return nil
                } catch {
                    return "is not a cron expression: \(error)"
                }
            }, coerce: { $0.string?.trimmingCharacters(in: .whitespaces).isEmpty == true ? .null : $0 }),
            .init("timezone", .string, default: .string("UTC"), check: { value in
                guard let name = value.string, !name.isEmpty, name.utf8.count <= 64, TimeZone(identifier: name) != nil else {
                    return "is not a known IANA time zone (Europe/Berlin, America/New_York, UTC)"
                }
                return nil
            }, coerce: { $0 == .null || $0.string == "" ? .string("UTC") : $0 }),
            .init("extra", .string, default: .string(""), check: { value in
                (value.string?.utf8.count ?? 0) > 1 << 20 ? "must be at most 1 MiB" : nil
            }, coerce: ObjectKind.Field.lenientText),
            .init("misfire", .string, default: .string("run_once"), allowed: ["run_once", "skip"]),
            .init("max_run_seconds", .int, default: .int(0), check: ObjectKind.Field.range(0...604_800),
                  coerce: { ObjectKind.Field.lenientInt($0) == .null ? .int(0) : ObjectKind.Field.lenientInt($0) }),
        ],
        validate: { fields in
            do throws(JobDefinition.Problem) {
                _ = try JobDefinition(fields)
                return nil
            } catch {
                return (error.field, error.reason)
            }
        })

    public static let all = [basicAuth, httpChannel, amqpDefinition, amqpOutconn, amqpChannel, httpOutconn, scheduler]
}
