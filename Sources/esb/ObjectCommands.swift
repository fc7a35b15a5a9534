import ArgumentParser
import Foundation

/// `esb channels …`, `esb security …`, `esb amqp def|out …`: CRUD of configuration objects.
/// Fields are given as `key=value`; `true`/`false` become booleans, whole numbers integers.
protocol ObjectCommandGroup {
    static var apiPath: String { get }
    static var createUsage: String { get }
}

/// Parses `key=value` arguments into a JSON object.
enum FieldArguments {
    static func json(_ arguments: [String], name: String? = nil) throws -> Data {
        var object: [String: Any] = [:]
        if let name { object["name"] = name }
        for argument in arguments {
            guard let equals = argument.firstIndex(of: "=") else { throw CLIError("expected key=value, got '\(argument)'") }
            let key = String(argument[..<equals])
            var text = String(argument[argument.index(after: equals)...])
            // Secrets from a file (password=@FILE) or standard input (password=-), not `ps`.
            if key == "password" { text = try SecretArgument.resolve(text, what: "password") }
            if text == "true" || text == "false" { object[key] = text == "true" }
            else if let number = Int(text), !text.hasPrefix("+") { object[key] = number }
            else { object[key] = text }
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
}

struct ObjectCommands<Group: ObjectCommandGroup> {
    static func list(_ connection: ConnectionOptions) async throws {
        try await connection.client.show("GET", Group.apiPath)
    }
}

enum ChannelsGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/channels/http"
    static let createUsage = "NAME url_path=/orders/{id} service=orders.get [method=GET] [data_format=json] [security=NAME] [is_active=false]"
}

enum AMQPChannelsGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/channels/amqp"
    static let createUsage = "NAME def=DEF queue=Q service=S [consumers=1] [prefetch=10] [max_attempts=3] [retry_delay_ms=1000] [data_format=text|json|xml] [is_active=true]"
}

enum SecurityGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/security/basic-auth"
    static let createUsage = "NAME username=U [realm=R] [password=P]"
}

enum AMQPDefinitionGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/definitions/amqp"
    static let createUsage = "NAME host=H username=U [port=5672] [vhost=/] [heartbeat=30] [frame_max=131072] [connect_timeout_ms=5000] [tls=true] [tls_ca_path=P] [tls_verify=false] [password=P]"
}

enum AMQPOutconnGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/outgoing/amqp"
    static let createUsage = "NAME def=DEF [delivery_mode=2] [priority=5] [content_type=T] [content_encoding=E] [expiration=MS] [user_id=U] [app_id=A] [pool_size=4] [confirm=true] [mandatory=true] [confirm_timeout_ms=5000] [acquire_timeout_ms=5000] [is_active=true]"
}

/// `list`, `create`, `get`, `edit`, `delete` for one kind of object.
enum ObjectSubcommands<Group: ObjectCommandGroup> {
    static var all: [any ParsableCommand.Type] {
        [ListObjects<Group>.self, CreateObject<Group>.self, GetObject<Group>.self, EditObject<Group>.self, DeleteObject<Group>.self]
    }
}

struct ListObjects<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "list", abstract: "List them all.") }
    @OptionGroup var connection: ConnectionOptions
    func run() async throws { try await ObjectCommands<Group>.list(connection) }
}

struct CreateObject<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "create", abstract: "Create: \(Group.createUsage)") }
    @Argument var name: String
    @Argument var fields: [String] = []
    @OptionGroup var connection: ConnectionOptions
    func run() async throws {
        try await connection.client.show("POST", Group.apiPath, body: try FieldArguments.json(fields, name: name))
    }
}

struct GetObject<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "get", abstract: "Show one.") }
    @Argument var name: String
    @OptionGroup var connection: ConnectionOptions
    func run() async throws { try await connection.client.show("GET", "\(Group.apiPath)/\(URLText.segment(name))") }
}

struct EditObject<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "edit", abstract: "Change the given fields: NAME key=value…") }
    @Argument var name: String
    @Argument var fields: [String] = []
    @OptionGroup var connection: ConnectionOptions
    func run() async throws {
        try await connection.client.show("PUT", "\(Group.apiPath)/\(URLText.segment(name))", body: try FieldArguments.json(fields))
    }
}

struct DeleteObject<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "delete", abstract: "Delete one (refused while in use).") }
    @Argument var name: String
    @OptionGroup var connection: ConnectionOptions
    func run() async throws { try await connection.client.show("DELETE", "\(Group.apiPath)/\(URLText.segment(name))") }
}

struct ChannelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channels", abstract: "HTTP channels (channel_plain_http); `channels amqp …`: AMQP channels.",
        subcommands: ObjectSubcommands<ChannelsGroup>.all + [AMQPChannelsCommand.self])
}

struct AMQPChannelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp", abstract: "AMQP channels (channel_amqp): consumers of a queue that invoke a service.",
        subcommands: ObjectSubcommands<AMQPChannelsGroup>.all)
}

struct SecurityCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "security", abstract: "Basic-auth definitions (def_sec).",
        subcommands: ObjectSubcommands<SecurityGroup>.all + [PasswordObject<SecurityGroup>.self])
}

/// `password NAME`: sets an object's password, read from a file or stdin (never an argument,
/// which `ps` would show).
struct PasswordObject<Group: ObjectCommandGroup>: AsyncParsableCommand {
    static var configuration: CommandConfiguration { .init(commandName: "password", abstract: "Set the password, read from --password-file or stdin.") }
    @Argument var name: String
    @Option(name: .customLong("password-file"), help: "A file holding the new password (default: stdin).") var passwordFile: String?
    @OptionGroup var connection: ConnectionOptions
    func run() async throws {
        let data = passwordFile.map { FileManager.default.contents(atPath: $0) ?? Data() } ?? FileHandle.standardInput.readDataToEndOfFile()
        let password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        let body = try JSONSerialization.data(withJSONObject: ["password1": password, "password2": password])
        try await connection.client.show("POST", "\(Group.apiPath)/\(URLText.segment(name))/password", body: body)
        print("password of '\(name)' changed")
    }
}

enum SchedulerGroup: ObjectCommandGroup {
    static let apiPath = "/esb/api/scheduler"
    static let createUsage = """
        NAME service=S job_type=one_time|interval_based|cron_style [start_date=2025-01-31T08:00:00+01:00] \
        [weeks=N] [days=N] [hours=N] [minutes=N] [seconds=N] [repeats=N] ['cron_definition=*/5 * * * *'] \
        [timezone=Europe/Berlin] [extra=TEXT] [misfire=run_once|skip] [max_run_seconds=0] [is_active=true]
        """
}

/// `esb scheduler …`: scheduled jobs, their runs, "run now".
struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Scheduled jobs (scheduler): services invoked once, at an interval or on a cron schedule.",
        subcommands: ObjectSubcommands<SchedulerGroup>.all + [ExecuteJob.self, JobRuns.self])

    struct ExecuteJob: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "execute", abstract: "Run a job now (its schedule stays); prints the run's cid.")
        @Argument var name: String
        @OptionGroup var connection: ConnectionOptions
        func run() async throws {
            try await connection.client.show("POST", "\(SchedulerGroup.apiPath)/\(URLText.segment(name))/execute")
        }
    }

    struct JobRuns: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "runs", abstract: "A job's runs, newest first (the last 100).")
        @Argument var name: String
        @OptionGroup var connection: ConnectionOptions
        func run() async throws {
            try await connection.client.show("GET", "\(SchedulerGroup.apiPath)/\(URLText.segment(name))/runs")
        }
    }
}
