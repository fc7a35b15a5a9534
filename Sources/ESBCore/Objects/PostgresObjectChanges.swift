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
        try await connection.run("SELECT pg_notify(\(channel), \(payload(server: server, kinds: kinds)))", logger: logger)
    }

    /// Follows other servers' changes until the task is cancelled: `changed` hears the kinds
    /// of each. Once listening (at start, and after a lost connection is reconnected),
    /// `changed` hears every kind (`nil`): notifications sent before were not received, so
    /// everything is read again; so it is when the change counter shows a change this
    /// server did not hear of (polling, the fallback for a LISTEN connection that broke silently).
    static func follow(_ odb: PostgresODB, server: String, counter: ChangeCounter,
                       changed: @escaping @Sendable (Set<String>?) async -> Void) async {
        await odb.follow(channel: channel, what: "other servers' object changes", counter: counter,
                         listening: { await changed(nil) }) { payload in
            var lines = payload.split(separator: "\n").map(String.init)
            guard !lines.isEmpty, lines.removeFirst() != server else { return }
            await changed(Set(lines))
        }
    }
}
