import ArgumentParser
import Foundation

/// `esb amqp def …` (def_amqp) and `esb amqp out …` (outconn_amqp).
struct AMQPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp", abstract: "AMQP connection definitions and outgoing connections.",
        subcommands: [DefinitionCommand.self, OutconnCommand.self])

    struct DefinitionCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "def", abstract: "Connection definitions (def_amqp): broker address and credentials.",
            subcommands: ObjectSubcommands<AMQPDefinitionGroup>.all + [PasswordObject<AMQPDefinitionGroup>.self])
    }

    struct OutconnCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "out", abstract: "Outgoing connections (outconn_amqp): pools with message defaults.",
            subcommands: ObjectSubcommands<AMQPOutconnGroup>.all + [PublishCommand.self])
    }

    struct PublishCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "publish", abstract: "Publish one message through an outgoing connection and wait for the broker's confirm.")
        @Argument(help: "The outgoing connection.") var name: String
        @Option(help: "The exchange (default: the default exchange).") var exchange = ""
        @Option(name: .customLong("routing-key")) var routingKey: String
        @Option(help: "The message body.") var payload: String?
        @Option(name: .customLong("payload-file"), help: "A file holding the message body.") var payloadFile: String?
        @Option(name: .customLong("property"), help: "A property, key=value (content_type, priority, message_id…); repeatable.")
        var properties: [String] = []
        @Option(name: .customLong("header"), help: "A header, key=value; repeatable.") var headers: [String] = []
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            var body: [String: Any] = ["exchange": exchange, "routing_key": routingKey]
            if let payloadFile {
                guard let data = FileManager.default.contents(atPath: payloadFile) else { throw CLIError("cannot read \(payloadFile)") }
                body["payload"] = String(decoding: data, as: UTF8.self)
            } else {
                body["payload"] = payload ?? ""
            }
            body["properties"] = try JSONSerialization.jsonObject(with: try FieldArguments.json(properties))
            body["headers"] = try JSONSerialization.jsonObject(with: try FieldArguments.json(headers))
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            try await connection.client.show("POST", "\(AMQPOutconnGroup.apiPath)/\(URLText.segment(name))/publish", body: data)
        }
    }
}
