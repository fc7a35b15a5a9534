import ESBConfig
import ESBHotDeploy
import ESBStore
import Logging

/// The server's schema: every feature's migrations, in the order they shipped. A new
/// migration goes at the end; a shipped one never moves or changes.
public enum ODBSchema {
    public static let migrations: [ODBMigration] = [
        DeploymentStore.tables,
        ObjectStore.table,
        DeploymentStore.crashCountColumn,
        AsyncStore.table,
        DeploymentStore.importsColumn,
        ClusterMembership.table,
        AsyncStore.claimColumn,
        DeploymentStore.clusterTables,
        DashboardSessionStore.table,
        Scheduler.tables,
        Scheduler.runsWrittenOnce,
    ]
}

extension ODB {
    /// Opens the server's ODB at `path` with the whole schema migrated.
    public convenience init(path: String) throws(StoreError) {
        try self.init(path: path, schema: ODBSchema.migrations)
    }
}

extension ODB {
    /// Opens the ODB `[odb]` names with the whole schema migrated (with `migrate: false`,
    /// not migrated until ``migrate()``); `attempt` hears of each failed try to reach PostgreSQL.
    public static func open(config: ServerConfig.ODB, logger: Logger, migrate: Bool = true,
                            attempt: @Sendable (Int, StoreError) -> Void = { _, _ in }) async throws(StoreError) -> ODB {
        try await open(location(config), schema: ODBSchema.migrations, logger: logger, migrate: migrate, attempt: attempt)
    }

    /// Where `[odb]` says the ODB is.
    public static func location(_ config: ServerConfig.ODB) -> ODBLocation {
        switch config.engine {
        case .sqlite:
            return .sqlite(path: config.path)
        case .postgresql:
            return .postgresql(PostgresODBSettings(
                host: config.host, port: config.port, database: config.database, username: config.username,
                password: config.password?.value, poolSize: config.poolSize,
                tls: config.tls ? .verifyFull(caPath: config.tlsCAPath) : .disabled,
                connectTimeout: .seconds(config.connectTimeoutSeconds)))
        }
    }
}
