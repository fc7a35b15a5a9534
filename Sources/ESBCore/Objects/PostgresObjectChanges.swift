import ESBStore
import Foundation
import Logging
import PostgresNIO

/// Object changes between the servers of a cluster on PostgreSQL: each object transaction
/// sends `NOTIFY esb_objects` with its server and kinds before it commits (PostgreSQL
/// delivers it at commit, never for a rollback), and every server LISTENs on a connection
/// of its own.
enum PostgresObjectChanges {
    static let channel = "esb_objects"

    /// The notification of a committed change to `kinds` by `server`: `server` then the kinds,
    /// one per line (names carry no line breaks).
    static func payload(server: String, kinds: Set<String>) -> String {
        ([server] + kinds.sorted()).joined(separator: "\n")
    }

    /// Sends the notification inside the transaction on `connection`.
    static func notify(_ connection: PostgresConnection, server: String, kinds: Set<String>, logger: Logger) async throws {
        guard !kinds.isEmpty else { return }
        try await connection.query("SELECT pg_notify(\(channel), \(payload(server: server, kinds: kinds)))", logger: logger)
    }

    /// Follows other servers' changes until the task is cancelled: `changed` hears the kinds
    /// of each. Once listening (at start, and after a lost connection is reconnected, every
    /// `retry`), `changed` hears every kind (`nil`): notifications sent before were not
    /// received, so everything is read again.
    static func follow(_ odb: PostgresODB, server: String, retry: Duration, logger: Logger,
                       changed: @escaping @Sendable (Set<String>?) async -> Void) async {
        var connectedBefore = false
        var failing = false
        while !Task.isCancelled {
            do {
                let connection = try await odb.connectSession()
                do {
                    try await connection.listen(on: channel) { notifications in
                        // A change committed before LISTEN took effect (at start, or while
                        // reconnecting) sent no notification here: read everything once.
                        if connectedBefore {
                            logger.notice("following object changes again; reading every object kind again in case a change was missed")
                        }
                        await changed(nil)
                        connectedBefore = true
                        failing = false
                        for try await notification in notifications {
                            var lines = notification.payload.split(separator: "\n").map(String.init)
                            guard !lines.isEmpty, lines.removeFirst() != server else { continue }
                            await changed(Set(lines))
                        }
                    }
                    try? await connection.close()
                } catch {
                    try? await connection.close()
                    throw error
                }
            } catch {
                if Task.isCancelled { return }
                if !failing {
                    logger.warning("lost the connection that follows other servers' object changes; reconnecting",
                                   metadata: ["esb.error": "\(StoreError.describe(error))"])
                }
                failing = true
            }
            try? await Task.sleep(for: retry)
        }
    }
}
