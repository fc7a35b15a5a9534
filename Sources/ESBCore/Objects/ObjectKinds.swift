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
            .init("method", .string, default: .string(""), check: ObjectKind.Field.oneOf(["", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])),
            .init("service", .string, check: ObjectKind.Field.nonEmpty),
            .init("data_format", .string, default: .string("json"), check: ObjectKind.Field.oneOf(["json", "xml", "text"])),
            .init("security", .string, default: .string("none"), references: "def_sec"),
            .init("is_active", .bool, default: .bool(true)),
        ])

    public static let all = [basicAuth, httpChannel]
}
