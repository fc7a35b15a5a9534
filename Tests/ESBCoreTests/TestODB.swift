import ESBCore
import ESBStore
import Foundation
import Logging
import PostgresNIO

/// ODBs for tests, on each engine: a new SQLite file, or a new database on the PostgreSQL
/// `scripts/services` runs (127.0.0.1:$ESB_PG_PORT, role esb/esb).
enum TestODB {
    static let logger = Logger(label: "esb-tests")

    static var postgresPort: Int { Int(ProcessInfo.processInfo.environment["ESB_PG_PORT"] ?? "") ?? 55432 }

    /// Settings for `database` on the test server, as role esb.
    static func postgresSettings(database: String, password: String? = "esb") -> PostgresODBSettings {
        PostgresODBSettings(host: "127.0.0.1", port: postgresPort, database: database, username: "esb", password: password,
                            poolSize: 4, connectTimeout: .seconds(20))
    }

    /// A new, empty database on the test server (named `esb_test_…`).
    static func createPostgresDatabase() async throws -> PostgresODBSettings {
        let name = "esb_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let configuration = PostgresConnection.Configuration(
            host: "127.0.0.1", port: postgresPort, username: "esb", password: "esb", database: "postgres", tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
            try await connection.close()
        } catch {
            try? await connection.close()
            throw error
        }
        return postgresSettings(database: name)
    }

    /// A path for a new SQLite ODB, in a directory of its own.
    static func sqlitePath() -> String { FileManager.default.temporaryDirectory.appendingPathComponent("esb-odb-\(UUID().uuidString)/esb.db").path }

    /// A new ODB on `engine` with the server's schema.
    static func make(_ engine: ODB.Engine) async throws -> ODB {
        switch engine {
        case .sqlite:
            try ODB(path: sqlitePath())
        case .postgresql:
            try await ODB.open(.postgresql(createPostgresDatabase()), schema: ODBSchema.migrations, logger: logger)
        }
    }

    /// A second ODB on the database `odb` is on, as a second server would open it.
    static func again(_ odb: ODB) async throws -> ODB {
        switch odb.connection {
        case .sqlite:
            try ODB(path: odb.location)
        case .postgresql(let postgres):
            try await ODB.open(.postgresql(postgres.settings), schema: ODBSchema.migrations, logger: logger)
        }
    }
}
