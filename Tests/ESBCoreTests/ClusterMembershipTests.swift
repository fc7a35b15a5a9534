@testable import ESBConfig
import ESBStore
@testable import ESBCore
import Foundation
import Logging
import Testing

/// Membership on each engine: a name is one live process's, an ODB is one cluster's, a
/// SQLite file one server's; and on PostgreSQL, claims of async work last as long as
/// their server's heartbeat.
@Suite struct ClusterMembershipTests {
    static let logger = Logger(label: "esb-tests")

    static func join(_ odb: ODB, _ name: String, cluster: String = "test", lease: Int = 30) async throws(StoreError) -> ClusterMembership {
        var settings = ServerConfig.Cluster()
        settings.name = cluster
        settings.leaseSeconds = lease
        return try await ClusterMembership.join(odb: odb, name: name, cluster: settings, address: "127.0.0.1:1", logger: logger)
    }

    static func refusal(_ body: () async throws -> Void) async -> StoreError? {
        do {
            try await body()
            return nil
        } catch {
            return error as? StoreError
        }
    }

    @Test(arguments: ODB.Engine.allCases)
    func aNameHeldByALiveServerIsRefusedUntilItLeaves(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let first = try await Self.join(odb, "one")
        let second = try await TestODB.again(odb)
        let refused = await Self.refusal { _ = try await Self.join(second, "one") }
        #expect(refused?.cause == .refused)
        switch engine {
        case .postgresql: #expect(refused?.message.contains("[main] name 'one' is in use") == true, "\(refused?.message ?? "")")
        case .sqlite: #expect(refused?.message.contains("is in use: another server is running on it") == true, "\(refused?.message ?? "")")
        }
        if engine == .postgresql {
            // Another name on the same PostgreSQL ODB is welcome.
            _ = try await Self.join(second, "two")
        }
        await first.records.leave()
        let again = try await Self.join(try await TestODB.again(odb), "one")
        #expect(try await again.servers().first { $0.name == "one" }?.status == .up)
    }

    @Test(arguments: ODB.Engine.allCases)
    func anODBBelongsToOneClusterName(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let first = try await Self.join(odb, "one", cluster: "blue")
        await first.records.leave()
        let second = try await TestODB.again(odb)
        let refused = await Self.refusal { _ = try await Self.join(second, "two", cluster: "green") }
        #expect(refused?.cause == .refused)
        #expect(refused?.message.contains("[cluster] name 'green'") == true && refused?.message.contains("'blue'") == true)
    }

    /// `esb odb copy` holds the ODB: it is refused while a server runs, and no server starts
    /// while it holds it (on PostgreSQL, an empty database not yet migrated included).
    @Test(arguments: ODB.Engine.allCases)
    func aCopysHoldAndARunningServerExcludeEachOther(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let server = try await Self.join(odb, "one")
        let copier = try await TestODB.again(odb)
        let refused = await Self.refusal { _ = try await ClusterMembership.holdWithNoServer(odb: copier, for: "copying") }
        #expect(refused?.cause == .refused)
        #expect(refused?.message.contains("is in use") == true, "\(refused?.message ?? "")")
        await server.records.leave()
        if case .postgresql(let postgres) = odb.connection {
            // Seen lately without a clean stop (its connection holding the name broke): it may
            // still serve, so it counts as running until it was silent for the window.
            try await postgres.client.query("UPDATE esb_server SET stopped_at = NULL WHERE name = 'one'", logger: Self.logger)
            let recent = await Self.refusal { _ = try await ClusterMembership.holdWithNoServer(odb: copier, for: "copying") }
            #expect(recent?.message.contains("'one' (seen") == true, "\(recent?.message ?? "")")
            try await postgres.client.query("UPDATE esb_server SET last_seen = last_seen - 61000 WHERE name = 'one'", logger: Self.logger)
        }

        let hold = try await ClusterMembership.holdWithNoServer(odb: copier, for: "copying")
        let starting = try await TestODB.again(odb)
        let blocked = await Self.refusal { _ = try await Self.join(starting, "two") }
        #expect(blocked?.cause == .refused)
        if engine == .postgresql {
            #expect(blocked?.message.contains("is held by esb odb copy") == true, "\(blocked?.message ?? "")")
            // A database with no schema yet is held the same way (the copy migrates it once held).
            let empty = try await ODB.open(.postgresql(try await TestODB.createPostgresDatabase()), schema: ODBSchema.migrations,
                                           logger: TestODB.logger, migrate: false)
            let emptyHold = try await ClusterMembership.holdWithNoServer(odb: empty, for: "copying")
            try await empty.migrate()
            let blockedEmpty = await Self.refusal { _ = try await Self.join(try await TestODB.again(empty), "three") }
            #expect(blockedEmpty?.message.contains("is held by esb odb copy") == true, "\(blockedEmpty?.message ?? "")")
            await emptyHold.release()
        }
        await hold.release()
        let started = try await Self.join(try await TestODB.again(odb), "two")
        #expect(try await started.servers().first { $0.name == "two" }?.status == .up)
    }

    @Test func serversAreUpWhileTheyRenewAndDownOnceStoppedOrSilent() async throws {
        let odb = try await TestODB.make(.postgresql)
        let a = try await Self.join(odb, "a", lease: 3600)
        let b = try await Self.join(try await TestODB.again(odb), "b", lease: 3600)
        #expect(try await a.servers().map(\.status) == [.up, .up])
        await b.records.leave()
        #expect(try await a.servers().map(\.status) == [.up, .down])
        // Silent: a's heartbeat is older than the lease (the ODB's clock).
        #expect(try await a.records.servers(leaseMS: 0).first?.status == .down)
        await a.beat()
        #expect(await a.health()["cluster"]?.status == .ok)
    }

    /// A claim lasts while its server renews its heartbeat; a stopped or silent server's
    /// claims are taken over; a server's own claims come back to it at its next start.
    @Test func asyncClaimsAreTakenOverOnlyFromServersThatStoppedOrWentSilent() async throws {
        let odb = try await TestODB.make(.postgresql)
        let other = try await TestODB.again(odb)
        let a = try await Self.join(odb, "a")
        let b = try await Self.join(other, "b")
        let storeA = AsyncStore(odb: odb, server: "a", lease: .seconds(30))
        let storeB = AsyncStore(odb: other, server: "b", lease: .seconds(30))
        for _ in 0..<3 {
            try await storeA.records.insert(
                AsyncRecord(kind: .invokeAsync, target: "t.svc", payload: Data(), source: nil, origCID: nil, callback: nil, now: 1_000))
        }
        // a claims only while its own heartbeat is fresh: renewed here, as its timer would.
        await a.beat()
        let claimed = try await storeA.claimDue(now: 2_000, limit: 3)
        try #require(claimed.count == 3)

        // a renews: nothing to take.
        #expect(try await storeB.takeOver(now: 3_000) == (0, 0))
        // b's own start recovers only b's claims.
        #expect(try await storeB.recover(now: 3_000) == (0, 0))
        // Silent past the lease: taken over, each counted as an interruption.
        let taken = try await storeB.records.takeOver(now: 3_000, leaseMS: 0)
        #expect(taken == (3, 0))
        let record = try #require(try await storeB.record(cid: claimed[0].cid))
        #expect(record.status == .pending && record.interruptions == 1 && record.nextRunAt == 3_000)
        // a comes back from its silence: its outcome is not written over the new owner's.
        await #expect(throws: AsyncClaimLost.self) { try await storeA.update(claimed[0]) }

        // Claimed by b now; b stops cleanly: a takes over at once, whatever the lease.
        await b.beat()
        #expect(try await storeB.claimDue(now: 4_000, limit: 3).count == 3)
        await a.beat()
        #expect(try await storeA.takeOver(now: 5_000) == (0, 0))
        try await Self.stop(server: "b", odb: other)
        #expect(try await storeA.takeOver(now: 5_000) == (3, 0))
    }

    /// A server whose own heartbeat is older than half the lease (its heartbeat connection
    /// is stuck or failing) claims nothing: the others may take its work over soon, and
    /// claims it made meanwhile would run twice. Its next heartbeat lets it claim again.
    @Test func aServerWhoseHeartbeatIsStaleClaimsNothingUntilItBeatsAgain() async throws {
        let odb = try await TestODB.make(.postgresql)
        let a = try await Self.join(odb, "a")
        let store = AsyncStore(odb: odb, server: "a", lease: .seconds(30))
        try await store.records.insert(
            AsyncRecord(kind: .invokeAsync, target: "t.svc", payload: Data(), source: nil, origCID: nil, callback: nil, now: 1_000))
        guard case .postgresql(let postgres) = odb.connection else { return }
        try await postgres.client.query("UPDATE esb_server SET last_seen = last_seen - 16000 WHERE name = 'a'", logger: Self.logger)
        #expect(try await store.claimDue(now: 2_000, limit: 5).isEmpty)
        #expect(await a.beat() == nil)
        #expect(try await store.claimDue(now: 2_000, limit: 5).count == 1)
    }

    /// On a shared ODB a server claims only work whose due step calls a service it has
    /// deployed: the target for an attempt, the callback once the attempts are over. The rest
    /// waits, unclaimed and not counted as due, for a server that has the service.
    @Test func aServerClaimsOnlyTheAsyncWorkOfServicesItHasDeployed() async throws {
        let odb = try await TestODB.make(.postgresql)
        let here = AsyncStore(odb: odb, server: "a", deployedServices: { ["t.here", "cb.here"] })
        let everything = AsyncStore(odb: odb, server: "b")
        func record(_ target: String, callback: String?, finished: Bool = false) -> AsyncRecord {
            var record = AsyncRecord(kind: .invokeAsync, target: target, payload: Data(), source: nil, origCID: nil,
                                     callback: callback, now: 1_000)
            if finished {
                record.status = .done
                record.callbackStatus = .pending
            }
            return record
        }
        let attemptHere = record("t.here", callback: "cb.elsewhere")
        let attemptElsewhere = record("t.elsewhere", callback: "cb.here")
        let callbackHere = record("t.elsewhere", callback: "cb.here", finished: true)
        let callbackElsewhere = record("t.here", callback: "cb.elsewhere", finished: true)
        for item in [attemptHere, attemptElsewhere, callbackHere, callbackElsewhere] { try await here.records.insert(item) }

        let claimed = try await here.claimDue(now: 2_000, limit: 10)
        #expect(Set(claimed.map(\.cid)) == [attemptHere.cid, callbackHere.cid])
        #expect(try await here.nextDue() == nil, "work for services this server lacks is not due here")
        #expect(try await everything.nextDue() == 1_000)
        #expect(Set(try await everything.claimDue(now: 2_000, limit: 10).map(\.cid)) == [attemptElsewhere.cid, callbackElsewhere.cid])
    }

    /// A claim committed after the scheduler stopped waiting for it (a read that timed out)
    /// would stay `running` under a live server: the scheduler makes its own claims that no
    /// task runs due again, and leaves the ones its tasks run alone.
    @Test(arguments: ODB.Engine.allCases)
    func ownClaimsNoTaskRunsAreMadeDueAgain(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let store = AsyncStore(odb: odb, server: "a")
        for _ in 0..<2 {
            try await store.records.insert(
                AsyncRecord(kind: .invokeAsync, target: "t.svc", payload: Data(), source: nil, origCID: nil, callback: nil, now: 1_000))
        }
        let claimed = try await store.claimDue(now: 2_000, limit: 2)
        #expect(claimed.count == 2)
        #expect(try await store.releaseStranded(now: 3_000, running: [claimed[0].cid]) == (1, 0))
        #expect(try await store.record(cid: claimed[0].cid)?.status == .running)
        let released = try #require(try await store.record(cid: claimed[1].cid))
        #expect(released.status == .pending && released.nextRunAt == 3_000 && released.interruptions == 1)
    }

    /// Marks `server` stopped, as its clean stop would.
    static func stop(server: String, odb: ODB) async throws {
        guard case .postgresql(let postgres) = odb.connection else { return }
        try await postgres.client.query("UPDATE esb_server SET stopped_at = 0 WHERE name = \(server)", logger: logger)
    }
}
