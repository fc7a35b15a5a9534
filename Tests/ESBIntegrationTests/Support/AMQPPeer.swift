import Foundation

/// RabbitMQ as seen by an independent client (pika, through scripts/testkit/amqp_peer.py),
/// so tests check what arrived without trusting our own wrapper.
enum AMQPPeer {
    struct Message: Decodable {
        var body: String
        var routing_key: String
        var exchange: String
        var properties: [String: JSONValue]
        var headers: [String: JSONValue]
    }

    static let host = ProcessInfo.processInfo.environment["ESB_AMQP_HOST"] ?? "127.0.0.1"
    static let port = Int(ProcessInfo.processInfo.environment["ESB_AMQP_PORT"] ?? "") ?? 5672

    /// A name no other test uses.
    static func uniqueName(_ prefix: String) -> String { "\(prefix).\(UUID().uuidString.prefix(8).lowercased())" }

    @discardableResult
    static func run(_ arguments: [String]) async throws -> String {
        let script = TestEnvironment.packageRoot + "/scripts/testkit/amqp_peer.py"
        let result = try await runCommand("/usr/bin/env", ["python3", script] + arguments)
        guard result.status == 0 else { throw PeerError(message: "amqp_peer \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result.stdout
    }

    /// A durable queue, bound to a new direct exchange of its own name when `exchange` is set.
    /// With `deadLetter`, that queue too, receiving what `queue` dead-letters (rejects).
    static func declare(_ queue: String, exchange: String? = nil, key: String? = nil, maxPriority: Int? = nil,
                        maxLength: Int? = nil, deadLetter: String? = nil) async throws {
        var arguments = ["declare", queue]
        if let deadLetter { arguments += ["--dead-letter", deadLetter] }
        if let maxLength { arguments += ["--max-length", String(maxLength)] }
        if let exchange { arguments += ["--exchange", exchange, "--key", key ?? queue] }
        if let maxPriority { arguments += ["--max-priority", String(maxPriority)] }
        try await run(arguments)
    }

    /// Publishes `count` persistent copies of `body` to `queue` (default exchange), confirmed;
    /// `numbered`: the bodies are `body` followed by 0, 1, ….
    static func publish(_ queue: String, _ body: String, count: Int = 1, numbered: Bool = false,
                        headers: [String: String] = [:], deepHeader: Int = 0) async throws {
        try await run(["publish", queue, "--body", body, "--count", String(count), "--deep-header", String(deepHeader)]
                      + (numbered ? ["--numbered"] : [])
                      + headers.sorted(by: { $0.key < $1.key }).flatMap { ["--header", "\($0.key)=\($0.value)"] })
    }

    /// Messages delivered to consumers and not yet acked, as the broker counts them.
    static func unacked(_ queue: String) async throws -> Int {
        let result = try await runCommand("/usr/bin/env", ["rabbitmqctl", "-q", "list_queues", "name", "messages_unacknowledged"])
        for line in result.stdout.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if fields.count == 2, fields[0] == queue { return Int(fields[1]) ?? -1 }
        }
        return -1
    }

    static func get(_ queue: String) async throws -> [Message] {
        try JSONDecoder().decode([Message].self, from: Data(try await run(["get", queue]).utf8))
    }

    static func count(_ queue: String) async throws -> Int {
        Int(try await run(["count", queue]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    static func delete(_ queue: String, exchange: String? = nil) async {
        _ = try? await run(["delete", queue] + (exchange.map { ["--exchange", $0] } ?? []))
    }

    struct PeerError: Error, CustomStringConvertible { var message: String; var description: String { message } }
}

/// Any JSON value, for comparing what pika decoded.
enum JSONValue: Decodable, Equatable {
    case string(String), int(Int), double(Double), bool(Bool), array([JSONValue]), object([String: JSONValue]), null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .int(value) }
        else if let value = try? container.decode(Double.self) { self = .double(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}
