@testable import ESBConfig
@testable import ESBCore
@_spi(ESBHost) import ESBService
import Foundation
import Logging

/// A service context whose kvdb is the server's own ``KVDBService`` on a real Redis, for
/// running the SDK's paginators in-process.
struct KVDBHost: ServiceHost {
    let kvdb: KVDBService

    nonisolated(nonsending) func kvdbExecute(_ command: [String], from context: ServiceContext) async throws -> RedisValue {
        try await kvdb.execute(command)
    }

    nonisolated(nonsending) func kvdbPipeline(_ commands: [[String]], from context: ServiceContext) async throws -> [RedisValue] {
        try await kvdb.pipeline(commands)
    }

    /// A context on `port` (the private Redis of a test).
    static func context(port: Int) -> (ServiceContext, KVDBService) {
        var config = ServerConfig.KVDB()
        config.port = port
        config.poolSize = 2
        let kvdb = KVDBService(config: config, logger: Logger(label: "test"))
        return (ServiceContext(cid: "test", serviceName: "test", logger: ServiceLogger { _, _ in }, host: KVDBHost(kvdb: kvdb)), kvdb)
    }
}
