import ESBConcurrency
import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// How to reach a PostgreSQL ODB (`[odb] engine = postgresql`).
public struct PostgresODBSettings: Sendable, CustomStringConvertible {
    /// Transport security toward the server.
    public enum TLS: Sendable, Equatable {
        case disabled
        /// Required, with the certificate verified against the system's CAs, or the CA
        /// bundle at `caPath`, and its name against the host (libpq's `verify-full`).
        case verifyFull(caPath: String?)
    }

    public var host: String
    public var port: Int
    public var database: String
    public var username: String
    public var password: String?
    /// The most connections this server opens (the pool).
    public var poolSize: Int
    public var tls: TLS
    /// How long a start keeps trying an unreachable server before it gives up.
    public var connectTimeout: Duration

    public init(host: String, port: Int, database: String, username: String, password: String?,
                poolSize: Int = 8, tls: TLS = .disabled, connectTimeout: Duration = .seconds(120)) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.poolSize = poolSize
        self.tls = tls
        self.connectTimeout = connectTimeout
    }

    /// `postgresql://user@host:port/database`, never the password.
    public var description: String { "postgresql://\(username)@\(host):\(port)/\(database)" }
}

/// An ODB on PostgreSQL: a pool of connections (PostgresNIO's ``PostgresClient``, run for as
/// long as this object lives), and the engine-level work the feature stores share: the
/// schema's migrations, `esb_meta`, one transaction on one leased connection.
public final class PostgresODB: Sendable {
    public let settings: PostgresODBSettings
    /// The pool the feature stores' PostgreSQL records query through.
    public let client: PostgresClient
    public let logger: Logger
    private let tls: TLSChoice
    private let running: Task<Void, Never>

    private init(settings: PostgresODBSettings, client: PostgresClient, tls: TLSChoice, logger: Logger) {
        self.settings = settings
        self.client = client
        self.tls = tls
        self.logger = logger
        running = Task { await client.run() }
    }

    deinit { running.cancel() }

    /// Stops the pool: running queries finish, later ones fail.
    func close() async {
        running.cancel()
        await running.value
    }

    /// The advisory lock every start takes while it migrates, so concurrent starts run
    /// their migrations one after another ("ESB!" as a number).
    static let migrationLock: Int64 = 0x4553_4221

    /// Reaches the server (retrying an unreachable one until the settings' connect timeout),
    /// migrates the schema in one transaction under ``migrationLock`` (without `migrate`,
    /// only checks that the schema is not newer than `migrations`), and opens the pool.
    static func open(
        _ settings: PostgresODBSettings, migrations: [ODBMigration], migrate: Bool = true, logger: Logger,
        attempt: @Sendable (Int, StoreError) -> Void
    ) async throws(StoreError) -> PostgresODB {
        let tls = try tlsConfiguration(settings)
        let start = ContinuousClock.now
        var backoff = Duration.milliseconds(250)
        var number = 0
        while true {
            number += 1
            do {
                let remaining = settings.connectTimeout - (ContinuousClock.now - start)
                let connection = try await connect(settings, tls: tls, logger: logger,
                                                   timeout: max(.seconds(1), min(.seconds(10), remaining)))
                do {
                    if migrate {
                        try await Self.migrate(connection, migrations: migrations, settings: settings, logger: logger)
                    } else {
                        try await refuseNewerSchema(connection, known: migrations, settings: settings, logger: logger)
                    }
                    try? await connection.close()
                } catch {
                    try? await connection.close()
                    throw error
                }
                break
            } catch {
                let failure = storeError(error, settings: settings)
                guard failure.cause == .unavailable else { throw failure }
                attempt(number, failure)
                let elapsed = ContinuousClock.now - start
                guard elapsed + backoff < settings.connectTimeout else {
                    throw StoreError(.unavailable, "[odb] \(settings) cannot be reached after \(number) attempts in "
                        + "\(elapsed.components.seconds) s (connect_timeout_seconds): \(failure.message)")
                }
                try? await Task.sleep(for: backoff)
                if Task.isCancelled { throw StoreError(.unavailable, "[odb] \(settings): start cancelled while waiting for the server") }
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        var configuration = PostgresClient.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: tls.client)
        configuration.options.maximumConnections = settings.poolSize
        configuration.options.connectTimeout = .seconds(10)
        // A server that stalls inside a transaction (frozen, cut off) must not hold the
        // cluster's locks for hours: PostgreSQL ends such a transaction, and a statement waits
        // for a lock at most so long (then fails as unavailable: try again).
        configuration.options.additionalStartupParameters = [
            ("lock_timeout", "15s"), ("idle_in_transaction_session_timeout", "60s"),
        ]
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return PostgresODB(settings: settings, client: client, tls: tls, logger: logger)
    }

    /// A connection of its own, outside the pool, for what lives as long as a session: a
    /// session advisory lock, LISTEN. The caller closes it.
    public func connectSession() async throws(StoreError) -> PostgresConnection {
        do {
            return try await Self.connect(settings, tls: tls, logger: logger, timeout: .seconds(10))
        } catch {
            throw Self.storeError(error, settings: settings)
        }
    }

    /// The TLS to use, for the pool and for the first connection (PostgresNIO takes one as a
    /// configuration, the other as a context built from it).
    private struct TLSChoice: Sendable {
        var client: PostgresClient.Configuration.TLS
        var connection: PostgresConnection.Configuration.TLS
    }

    private static func tlsConfiguration(_ settings: PostgresODBSettings) throws(StoreError) -> TLSChoice {
        guard case .verifyFull(let caPath) = settings.tls else { return TLSChoice(client: .disable, connection: .disable) }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        if let caPath { configuration.trustRoots = .file(caPath) }
        do {
            return TLSChoice(client: .require(configuration), connection: .require(try NIOSSLContext(configuration: configuration)))
        } catch {
            throw StoreError(.refused, "[odb] tls_ca_path '\(caPath ?? "system CAs")' cannot be used: \(error)")
        }
    }

    /// LISTENs on `channel` on a connection of its own until the task is cancelled, handing
    /// each notification's payload to `notified`. A lost connection is reconnected every
    /// `retry`, logged once as losing `what`. Notifications sent while not listening are
    /// lost, so `listening` runs each time LISTEN takes effect (at first too): it catches up.
    ///
    /// With `counter`, the feed's change counter is also read every `poll`: a change it
    /// shows that this server did not write runs `listening` too. That is the fallback for
    /// a LISTEN connection that broke without saying so (a half-open TCP connection).
    public func follow(channel: String, what: String, retry: Duration = .seconds(1),
                       counter: ChangeCounter? = nil, poll: Duration = .seconds(5),
                       listening: @escaping @Sendable () async -> Void,
                       notified: @escaping @Sendable (String) async -> Void) async {
        // The baseline before LISTEN's first catch-up: a change after it is either read by that
        // catch-up or seen by a poll (a baseline taken by the first poll could hide one).
        if let counter, let value = try? await counter.read(self) { _ = counter.changed(to: value) }
        await withDiscardingTaskGroup { group in
            if let counter {
                group.addTask { await self.poll(counter, every: poll, what: what, changed: listening) }
            }
            await listen(channel: channel, what: what, retry: retry, listening: listening, notified: notified)
            group.cancelAll()
        }
    }

    private func poll(_ counter: ChangeCounter, every interval: Duration, what: String,
                      changed: @Sendable () async -> Void) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard !Task.isCancelled else { return }
            // A failure here is the LISTEN loop's to report: it loses the same server.
            guard let value = try? await counter.read(self) else { continue }
            if counter.changed(to: value) {
                logger.debug("\(what): reading everything again after a change seen by polling")
                await changed()
            }
        }
    }

    private func listen(channel: String, what: String, retry: Duration,
                        listening: @escaping @Sendable () async -> Void,
                        notified: @escaping @Sendable (String) async -> Void) async {
        var connectedBefore = false
        var failing = false
        while !Task.isCancelled {
            do {
                let connection = try await connectSession()
                do {
                    try await connection.listen(on: channel) { notifications in
                        if connectedBefore { logger.notice("following \(what) again; catching up on what was missed") }
                        await listening()
                        connectedBefore = true
                        failing = false
                        for try await notification in notifications { await notified(notification.payload) }
                    }
                    try? await connection.close()
                } catch {
                    try? await connection.close()
                    throw error
                }
            } catch {
                if Task.isCancelled { return }
                if !failing {
                    logger.warning("lost the connection that follows \(what); reconnecting",
                                   metadata: ["esb.error": "\(StoreError.describe(error))"])
                }
                failing = true
            }
            try? await Task.sleep(for: retry)
        }
    }

    private static func connect(_ settings: PostgresODBSettings, tls: TLSChoice, logger: Logger,
                                timeout: Duration) async throws -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password,
            database: settings.database, tls: tls.connection)
        configuration.options.connectTimeout = .milliseconds(Int64(timeout.components.seconds * 1000))
        return try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
    }

    /// Runs the pending `migrations` (an ODB opened without migrating).
    func migrate(_ migrations: [ODBMigration]) async throws(StoreError) {
        do {
            try await client.withConnection { connection in
                try await Self.migrate(connection, migrations: migrations, settings: settings, logger: logger)
            }
        } catch {
            throw Self.storeError(error, settings: settings)
        }
    }

    /// A schema with migrations this build does not know stops the open before it migrates.
    private static func refuseNewerSchema(_ connection: PostgresConnection, known: [ODBMigration],
                                          settings: PostgresODBSettings, logger: Logger) async throws {
        var exists = false
        for try await value in try await connection.query(
            "SELECT to_regclass('esb_migration') IS NOT NULL", logger: logger).decode(Bool.self) {
            exists = value
        }
        guard exists else { return }
        var applied = Set<String>()
        for try await identifier in try await connection.query("SELECT identifier FROM esb_migration", logger: logger).decode(String.self) {
            applied.insert(identifier)
        }
        if let newer = ODB.newerSchemaError(applied: applied, known: known, location: settings.description) { throw newer }
    }

    private static func migrate(_ connection: PostgresConnection, migrations: [ODBMigration],
                                settings: PostgresODBSettings, logger: Logger) async throws {
        try await connection.run("BEGIN", logger: logger)
        do {
            try await connection.run("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.run("""
                CREATE TABLE IF NOT EXISTS esb_migration (identifier text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            var applied = Set<String>()
            for try await identifier in try await connection.query("SELECT identifier FROM esb_migration", logger: logger).decode(String.self) {
                applied.insert(identifier)
            }
            if let newer = ODB.newerSchemaError(applied: applied, known: migrations, location: settings.description) { throw newer }
            for migration in migrations where !applied.contains(migration.identifier) {
                guard let statements = migration.postgresql else { continue }
                for statement in statements {
                    try await connection.run(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.run("INSERT INTO esb_migration(identifier) VALUES (\(migration.identifier))", logger: logger)
                logger.info("ODB migrated", metadata: ["esb.odb": "\(settings)", "esb.migration": "\(migration.identifier)"])
            }
            try await connection.run("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// How long a call waits for a pooled connection before it fails as
    /// ``StoreError/Cause/unavailable`` (for ``query(_:logger:)``, a read, also for the
    /// server's first answer). While PostgreSQL cannot be reached, PostgresNIO's pool keeps
    /// requests waiting until its circuit breaker trips (about a minute); a request answers
    /// `odb.unavailable` within this instead.
    public static let leaseTimeout: Duration = .seconds(10)

    /// Runs the read `query` on a pooled connection, as `client.query` does; fails as
    /// unavailable when no connection and answer came within ``leaseTimeout``. A write goes
    /// through ``execute(_:logger:)`` or ``transaction(_:)``, whose statements, once sent,
    /// are waited for: a write given up on could still commit.
    public func query(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        let client = client
        do {
            return try await withDeadline(Self.leaseTimeout) { try await client.query(query, logger: logger) }
        } catch is DeadlineExceeded {
            throw StoreError(.unavailable, "[odb] \(settings): no connection to PostgreSQL answered within \(Self.leaseTimeout)")
        }
    }

    /// How long a write may run once its connection is leased before it is given up on, its
    /// outcome unknown. PostgreSQL's `lock_timeout` (15 s) ends a statement that waits; a
    /// statement on a connection PostgreSQL dropped at the wrong moment was seen never to
    /// return (R19): its connection is closed, so that the pool replaces it.
    public static let statementTimeout: Duration = .seconds(30)

    /// Runs the write `query` on a pooled connection leased within ``leaseTimeout``, and
    /// returns how many rows it returned.
    /// - Throws: ``StoreError/Cause/unavailable`` when no connection came (nothing was sent),
    ///   or with ``StoreError/outcomeUnknown`` when the statement got no answer within
    ///   ``statementTimeout``; else the engine's error.
    @discardableResult
    public func execute(_ query: PostgresQuery, logger: Logger) async throws -> Int {
        try await withLeasedConnection { try await $0.run(query, logger: logger) }
    }

    /// Runs `body` in one transaction on one leased connection: committed when it returns,
    /// rolled back when it throws (the error is rethrown as it was). Fails as unavailable when
    /// no connection was leased within ``leaseTimeout``, or with an unknown outcome when it
    /// did not end within ``statementTimeout``.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let logger = logger
        return try await withLeasedConnection { connection in
            try await connection.run("BEGIN", logger: logger)
            do {
                let value = try await body(connection)
                try await connection.run("COMMIT", logger: logger)
                return value
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// `client.withConnection`, with the wait for the lease bounded by ``leaseTimeout`` and
    /// the work on it by ``statementTimeout``. Either the lease or the lease timeout wins,
    /// never both: a connection leased after the timeout won is handed back unused, so
    /// `body` never runs for a caller told nothing was sent.
    private func withLeasedConnection<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let lease = LeaseRace()
        let client = client, leaseTimeout = Self.leaseTimeout, settings = settings
        do {
            // Past the whole bound the work is left behind (a dropped connection's query may
            // never return), not awaited.
            return try await withDeadline(leaseTimeout + Self.statementTimeout) {
                try await withThrowingTaskGroup(of: T?.self) { group in
                    group.addTask {
                        try await client.withConnection { connection in
                            guard lease.win(.leased(connection)) else { return nil }
                            // Given up on (the deadline, the caller cancelled) while it runs: the
                            // connection is closed while still leased here, so that its stuck
                            // work fails and the pool replaces it.
                            return try await withTaskCancellationHandler {
                                try await body(connection)
                            } onCancel: {
                                _ = connection.close() as EventLoopFuture<Void>
                            }
                        }
                    }
                    group.addTask {
                        try await Task.sleep(for: leaseTimeout)
                        guard lease.win(.timedOut) else { return nil }
                        // The group cancels the waiting lease, which PostgresNIO withdraws at once.
                        throw StoreError(.unavailable, "[odb] \(settings): no connection to PostgreSQL within \(leaseTimeout)")
                    }
                    while let outcome = try await group.next() {
                        if let value = outcome {
                            group.cancelAll()
                            return value
                        }
                    }
                    throw CancellationError()
                }
            }
        } catch let error as DeadlineExceeded {
            // Nothing leased yet: nothing was sent, and nothing will be.
            if lease.win(.timedOut) {
                throw StoreError(.unavailable, "[odb] \(settings): no connection to PostgreSQL within \(leaseTimeout)")
            }
            var unknown = StoreError(.unavailable, "[odb] \(settings): PostgreSQL did not answer within \(error.timeout); "
                + "what was sent may or may not have taken effect")
            unknown.outcomeUnknown = true
            throw unknown
        } catch is CancellationError where Task.isCancelled {
            // The caller was cancelled: as above, unless the work had begun.
            if lease.win(.timedOut) { throw CancellationError() }
            var unknown = StoreError(.unavailable, "[odb] \(settings): cancelled while PostgreSQL worked on it; "
                + "what was sent may or may not have taken effect")
            unknown.outcomeUnknown = true
            throw unknown
        }
    }

    func appliedMigrations() async throws -> [String] {
        var identifiers: [String] = []
        for try await identifier in try await query("SELECT identifier FROM esb_migration", logger: logger).decode(String.self) {
            identifiers.append(identifier)
        }
        return identifiers
    }

    func meta(_ key: String) async throws -> String? {
        for try await value in try await query("SELECT value FROM esb_meta WHERE key = \(key)", logger: logger).decode(String.self) {
            return value
        }
        return nil
    }

    func setMeta(_ key: String, _ value: String) async throws {
        try await execute("""
            INSERT INTO esb_meta(key, value) VALUES (\(key), \(value)) ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, logger: logger)
    }

    /// A PostgreSQL failure as a ``StoreError`` whose cause says whether retrying can help.
    public static func storeError(_ error: any Error, settings: PostgresODBSettings) -> StoreError {
        if let error = error as? StoreError { return error }
        guard let error = error as? PSQLError else {
            return StoreError(.unavailable, "[odb] \(settings): \(error)")
        }
        let described = "[odb] \(settings): \(describe(error))"
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            // 28xxx: authentication; 3D000: no such database; 42501: no privilege to connect.
            if state.hasPrefix("28") || state == "3D000" || state == "42501" { return StoreError(.refused, described) }
            // 57P0x: the server is starting, shutting down or restarting; 53xxx: out of
            // resources; 55P03, 25P03: a lock or an idle transaction timed out.
            if state.hasPrefix("57P0") || state.hasPrefix("53") || state.hasPrefix("08") || state == "55P03" || state == "25P03" {
                return StoreError(.unavailable, described)
            }
            return StoreError(.failed, described)
        case .sslUnsupported, .failedToAddSSLHandler, .unsupportedAuthMechanism, .authMechanismRequiresPassword, .saslError:
            return StoreError(.refused, described)
        default:
            // A certificate or host name that does not verify needs the operator, not a retry.
            if error.underlying is NIOSSLError || error.underlying is NIOSSLExtraError { return StoreError(.refused, described) }
            return StoreError(.unavailable, described)
        }
    }

    /// A PostgreSQL error in one line: the server's message and SQLSTATE, or the client's
    /// reason, without the query text.
    static func describe(_ error: PSQLError) -> String {
        if let info = error.serverInfo {
            return "\(info[.message] ?? "server error") (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

/// Which came first for one lease: the connection or the timeout.
private final class LeaseRace: Sendable {
    enum Outcome: Sendable {
        case leased(PostgresConnection)
        case timedOut
    }
    private let winner = Mutex<Outcome?>(nil)

    /// Whether `outcome` is the first (and so the only) one.
    func win(_ outcome: Outcome) -> Bool {
        winner.withLock { winner in
            guard winner == nil else { return false }
            winner = outcome
            return true
        }
    }

}

/// A feed's change counter in `esb_meta` (`key`): each writing transaction adds one before it
/// commits, and followers poll it (``PostgresODB/follow(channel:what:retry:counter:poll:listening:notified:)``).
/// The writers' transactions on the counter's row commit in the order of their values.
public final class ChangeCounter: Sendable {
    public let key: String
    /// The last value this server accounted for: polled, or written by itself right after it.
    private let seen = Mutex<Int64?>(nil)

    public init(key: String) { self.key = key }

    /// Adds one inside the writer's transaction on `connection`; returns the new value, for
    /// ``committed(_:)``.
    public func bump(on connection: PostgresConnection, logger: Logger) async throws -> Int64 {
        var value: Int64 = 0
        for try await text in try await connection.query("""
            INSERT INTO esb_meta(key, value) VALUES (\(key), '1')
            ON CONFLICT (key) DO UPDATE SET value = (CASE WHEN esb_meta.value ~ '^[0-9]{1,18}$'
              THEN (esb_meta.value)::bigint + 1 ELSE 1 END)::text RETURNING value
            """, logger: logger).decode(String.self) {
            value = Int64(text) ?? 0
        }
        return value
    }

    /// This server's transaction that bumped the counter to `value` committed: no other
    /// server changed anything in between when it follows the value last seen.
    public func committed(_ value: Int64) {
        seen.withLock { seen in if let last = seen, last == value - 1 { seen = value } }
    }

    func read(_ odb: PostgresODB) async throws -> Int64 {
        for try await text in try await odb.query("SELECT value FROM esb_meta WHERE key = \(key)", logger: odb.logger).decode(String.self) {
            return Int64(text) ?? 0
        }
        return 0
    }

    /// Whether `value`, just read, shows a change not accounted for (the first read sets the
    /// baseline, taken before LISTEN's first catch-up).
    func changed(to value: Int64) -> Bool {
        seen.withLock { seen in
            defer { seen = value }
            guard let last = seen else { return false }
            return last != value
        }
    }
}

extension PostgresConnection {
    /// Runs a statement and reads its whole answer, so that an error the server reports while
    /// executing it (a lock wait cancelled by the statement timeout) is thrown here. A query
    /// whose rows are never read hides it: the next statement fails with "current transaction
    /// is aborted", or a COMMIT quietly rolls back.
    @discardableResult
    public func run(_ query: PostgresQuery, logger: Logger) async throws -> Int {
        var rows = 0
        for try await _ in try await self.query(query, logger: logger) { rows += 1 }
        return rows
    }
}
