import ArgumentParser

/// `esb`: the SwiftESB admin command line.
@main
struct ESB: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "esb",
        abstract: "Administer a SwiftESB server.",
        subcommands: [ConfigCommand.self, CreateKeyCommand.self, PingCommand.self, DeployCommand.self,
                      InvokeCommand.self, ServicesCommand.self, DeploymentsCommand.self, ChannelsCommand.self,
                      SecurityCommand.self, AMQPCommand.self, AsyncCommand.self, SchedulerCommand.self, ClusterCommand.self,
                      EnmasseCommand.self, ODBCommand.self])
}
