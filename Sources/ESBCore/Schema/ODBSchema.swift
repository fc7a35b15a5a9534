import ESBHotDeploy
import ESBStore

/// The server's schema: every feature's migrations, in the order they shipped. A new
/// migration goes at the end; a shipped one never moves or changes.
public enum ODBSchema {
    public static let migrations: [ODBMigration] = [
        DeploymentStore.tables,
        ObjectStore.table,
        DeploymentStore.crashCountColumn,
        AsyncStore.table,
        DeploymentStore.importsColumn,
    ]
}

extension ODB {
    /// Opens the server's ODB at `path` with the whole schema migrated.
    public convenience init(path: String) throws(StoreError) {
        try self.init(path: path, schema: ODBSchema.migrations)
    }
}
