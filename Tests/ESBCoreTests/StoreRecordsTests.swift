@testable import ESBConfig
import ESBStore
@testable import ESBCore
import ESBHotDeploy
import Foundation
import PostgresNIO
import Testing

/// The feature stores' records on every engine the ODB has: the conditions each write
/// carries, evaluated in its transaction. A new engine runs this suite unchanged.
@Suite struct StoreRecordsTests {
    static func objects(_ engine: ODB.Engine) async throws -> ObjectStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-records-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SecretBox.createKeyFile(at: directory + "/secret.key")
        return ObjectStore(odb: try await TestODB.make(engine), secrets: try SecretBox(keyFile: directory + "/secret.key"), kinds: ObjectKinds.all)
    }

    static func insert(_ kind: String, _ name: String, _ body: String = "{}", references: [ObjectReference] = []) -> ObjectWrite {
        ObjectWrite(action: .insert(body: body), kind: kind, name: name, references: references)
    }

    @Test(arguments: ODB.Engine.allCases)
    func aBatchWithAFailedConditionWritesNothingAndNamesEveryFailure(engine: ODB.Engine) async throws {
        let records = try await Self.objects(engine).records
        #expect(try await records.apply([Self.insert("def_amqp", "taken")]).isEmpty)
        let failures = try await records.apply([
            Self.insert("def_amqp", "fresh"),
            Self.insert("def_amqp", "taken"),
            Self.insert("outconn_amqp", "out", references: [.init(field: "def", kind: "def_amqp", name: "gone")]),
            ObjectWrite(action: .update(body: "{}"), kind: "def_amqp", name: "missing"),
        ])
        #expect(failures == [
            .init(index: 1, reason: .exists),
            .init(index: 2, reason: .missingReference(.init(field: "def", kind: "def_amqp", name: "gone"))),
            .init(index: 3, reason: .notFound),
        ])
        #expect(try await records.get(kind: "def_amqp", name: "fresh") == nil)
        #expect(try await records.list(kind: "def_amqp").map(\.name) == ["taken"])
    }

    @Test(arguments: ODB.Engine.allCases)
    func aReferenceToAnObjectTheBatchInsertsHoldsWhateverItsPlace(engine: ODB.Engine) async throws {
        let records = try await Self.objects(engine).records
        let failures = try await records.apply([
            Self.insert("outconn_amqp", "out", #"{"def":"broker"}"#, references: [.init(field: "def", kind: "def_amqp", name: "broker")]),
            Self.insert("def_amqp", "broker"),
        ])
        #expect(failures.isEmpty)
        #expect(try await records.list(kind: "outconn_amqp").map(\.name) == ["out"])
    }

    @Test(arguments: ODB.Engine.allCases)
    func aTransactionsPlanSeesWhatItReadAndItsThrowWritesNothing(engine: ODB.Engine) async throws {
        let records = try await Self.objects(engine).records
        #expect(try await records.apply([Self.insert("def_amqp", "b", #"{"v":1}"#)]).isEmpty)
        let b = ObjectKey(kind: "def_amqp", name: "b"), c = ObjectKey(kind: "def_amqp", name: "c")
        let seen = try await records.transact(reading: [b, c]) { objects in
            ([ObjectWrite(action: .update(body: #"{"v":2}"#), kind: "def_amqp", name: "b", sealedSecret: "sealed")],
             objects.mapValues(\.body))
        }
        #expect(seen == [b: #"{"v":1}"#])
        #expect(try await records.get(kind: "def_amqp", name: "b") == StoredObject(kind: "def_amqp", name: "b", body: #"{"v":2}"#, sealedSecret: "sealed"))
        // An update without a secret keeps the one stored.
        #expect(try await records.apply([ObjectWrite(action: .update(body: #"{"v":3}"#), kind: "def_amqp", name: "b")]).isEmpty)
        #expect(try await records.get(kind: "def_amqp", name: "b")?.sealedSecret == "sealed")
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await records.transact(reading: [b]) { _ -> (writes: [ObjectWrite], value: Void) in throw Refused() }
        }
        _ = try? await records.transact(reading: []) { _ -> (writes: [ObjectWrite], value: Void) in
            ([Self.insert("def_amqp", "d"), Self.insert("def_amqp", "b")], ())
        }
        #expect(try await records.get(kind: "def_amqp", name: "d") == nil)
    }

    @Test(arguments: ODB.Engine.allCases)
    func anObjectCannotSatisfyItsOwnReference(engine: ODB.Engine) async throws {
        let records = try await Self.objects(engine).records
        let selfish = Self.insert("def_amqp", "loop", references: [.init(field: "def", kind: "def_amqp", name: "loop")])
        #expect(try await records.apply([selfish]) == [.init(index: 0, reason: .missingReference(.init(field: "def", kind: "def_amqp", name: "loop")))])
    }

    @Test(arguments: ODB.Engine.allCases)
    func aDeleteIsRefusedNamingEveryObjectThatRefersToIt(engine: ODB.Engine) async throws {
        let records = try await Self.objects(engine).records
        #expect(try await records.apply([
            Self.insert("def_amqp", "broker"),
            Self.insert("outconn_amqp", "z", #"{"def":"broker"}"#), Self.insert("outconn_amqp", "a", #"{"def":"broker"}"#),
            Self.insert("outconn_amqp", "other", #"{"def":"elsewhere"}"#),
        ]).isEmpty)
        let delete = ObjectWrite(action: .delete(referrers: [.init(kind: "outconn_amqp", field: "def")]), kind: "def_amqp", name: "broker")
        #expect(try await records.apply([delete]) == [.init(index: 0, reason: .inUse([ObjectKey(kind: "outconn_amqp", name: "a"),
                                                                                      ObjectKey(kind: "outconn_amqp", name: "z")]))])
        let unused = ObjectWrite(action: .delete(referrers: []), kind: "def_amqp", name: "broker")
        #expect(try await records.apply([unused]).isEmpty)
        #expect(try await records.apply([unused]) == [.init(index: 0, reason: .notFound)])
    }

    /// Edits of one object made at the same time through two stores on the same ODB (two
    /// servers) each keep what they changed: none is lost to another that read the object
    /// before it was written.
    /// An update, tried again when PostgreSQL cancelled it for its statement timeout: on a
    /// machine starved by CI's parallel phase, eight edits queued on one lock can take longer
    /// than that (a cancelled edit wrote nothing; what the test checks is that none is lost).
    static func updateOutlastingLoad(_ store: ObjectStore, _ kind: ObjectKind, _ name: String, _ change: ObjectFields) async throws {
        for attempt in 1...3 {
            do {
                _ = try await store.update(kind, name, change)
                return
            } catch let error as PSQLError where attempt < 3 && error.serverInfo?[.sqlState] == "57014" {
                continue
            } catch {
                Issue.record("update \(change): \(String(reflecting: error))")
                throw error
            }
        }
    }

    @Test(arguments: ODB.Engine.allCases)
    func concurrentEditsOfOneObjectLoseNoChange(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-records-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SecretBox.createKeyFile(at: directory + "/secret.key")
        let secrets = try SecretBox(keyFile: directory + "/secret.key")
        let stores = [ObjectStore(odb: odb, secrets: secrets, kinds: ObjectKinds.all),
                      ObjectStore(odb: try await TestODB.again(odb), secrets: secrets, kinds: ObjectKinds.all)]
        let kind = ObjectKinds.amqpDefinition
        _ = try await stores[0].create(kind, ["name": .string("broker"), "host": .string("h0"), "username": .string("u0")])
        let changes: ObjectFields = ["host": .string("h1"), "port": .int(1), "vhost": .string("/v1"), "username": .string("u1"),
                                     "frame_max": .int(8192), "heartbeat": .int(7), "connect_timeout_ms": .int(99),
                                     "tls_verify": .bool(false)]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, change) in changes.enumerated() {
                group.addTask { try await Self.updateOutlastingLoad(stores[index % 2], kind, "broker", [change.key: change.value]) }
            }
            try await group.waitForAll()
        }
        let final = try await stores[1].get(kind, "broker")
        #expect(final.filter { changes[$0.key] != nil } == changes)
    }

    @Test(arguments: ODB.Engine.allCases)
    func deploymentRecordsKeepTheServingVersionAndCountCrashes(engine: ODB.Engine) async throws {
        let store = DeploymentStore(odb: try await TestODB.make(engine))
        try await store.recordDeployed(unit: "a.swift", kind: .service, hash: "h1", source: Data("1".utf8), services: ["a"],
                                       imports: ["Zed", "Alpha"], keep: 1)
        try await store.recordFailed(unit: "a.swift", kind: .service, hash: "h2", source: Data("2".utf8), error: "boom")
        var unit = try #require(try await store.units().first)
        #expect((unit.status, unit.hash, unit.version, unit.services, unit.imports, unit.error) ==
                (.failed, "h1", 1, ["a"], ["Alpha", "Zed"], "boom"))
        #expect(try await store.servingSource(unit: "a.swift") == Data("1".utf8))
        try await store.recordDeployed(unit: "a.swift", kind: .service, hash: "h3", source: Data("3".utf8), services: ["a"], keep: 0)
        #expect(try await store.versionCount(unit: "a.swift") == 1)
        _ = try await store.beginRun(inFlight: [])
        for _ in 1..<DeploymentStore.quarantineAfterCrashes { #expect(try await store.beginRun(inFlight: ["a.swift"]).isEmpty) }
        #expect(try await store.beginRun(inFlight: ["a.swift"]) == ["a.swift"])
        unit = try #require(try await store.units().first)
        #expect(unit.status == .quarantined && unit.error?.contains("crashes in a row") == true)
    }

    /// Async records round-trip every field, and two servers claiming due work at the same
    /// time never claim one record twice.
    /// Concurrent accepts share group commits (one multi-row INSERT on PostgreSQL): each
    /// comes back once its record is stored as it was given, and a record that cannot be
    /// stored (its cid is taken) fails alone.
    @Test(arguments: ODB.Engine.allCases)
    func concurrentAcceptsAreEachStoredAndABadOneFailsAlone(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let store = AsyncStore(odb: odb, server: "a")
        let taken = AsyncRecord(kind: .invokeAsync, target: "t.svc", payload: Data(), source: nil, origCID: nil, callback: nil, now: 1)
        try await store.records.insert(taken)
        let records = (0..<300).map { index in
            var record = AsyncRecord(kind: index % 2 == 0 ? .invokeAsync : .invokeRetry, target: "t\(index).svc",
                                     payload: Data([UInt8(index % 256), 0, 255]), source: index % 3 == 0 ? nil : "s.svc",
                                     origCID: nil, callback: index % 5 == 0 ? "cb.svc" : nil, now: Int64(index))
            if index == 150 { record.cid = taken.cid }
            record.errors = index % 7 == 0 ? ["e \(index)"] : []
            return record
        }
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, record) in records.enumerated() {
                group.addTask { (index, (try? await store.records.insert(record)) != nil) }
            }
            return await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(outcomes.filter { !$0.value }.map(\.key) == [150])
        for (index, record) in records.enumerated() where index != 150 {
            #expect(try await store.records.record(cid: record.cid) == record)
        }
        #expect(try await store.records.record(cid: taken.cid) == taken)
    }

    @Test(arguments: ODB.Engine.allCases)
    func asyncRecordsRoundTripAndAreClaimedOnce(engine: ODB.Engine) async throws {
        let odb = try await TestODB.make(engine)
        let stores = [AsyncStore(odb: odb, server: "a"), AsyncStore(odb: try await TestODB.again(odb), server: "b")]
        var sample = AsyncRecord(kind: .invokeRetry, target: "t.svc", payload: Data([0, 1, 2, 255]), source: "s.svc",
                                 origCID: "orig", callback: "cb.svc", context: "ctx", repeats: 3, interval: .milliseconds(250),
                                 backoff: 2, maxInterval: .seconds(9), now: 1_000)
        sample.errors = ["first", "second \"quoted\""]
        sample.response = Data("resp".utf8)
        try await stores[0].records.insert(sample)
        #expect(try await stores[1].records.record(cid: sample.cid) == sample)

        for index in 0..<200 {
            try await stores[index % 2].records.insert(
                AsyncRecord(kind: .invokeAsync, target: "t.svc", payload: Data(), source: nil, origCID: nil, callback: nil, now: 1_000))
        }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for claimer in 0..<4 {
                group.addTask {
                    var cids: [String] = []
                    while true {
                        let batch = try await stores[claimer % 2].records.claimDue(now: 2_000, limit: 7)
                        if batch.isEmpty { return cids }
                        cids += batch.map(\.cid)
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == 201)
        #expect(Set(claimed).count == 201)
        #expect(try await stores[0].records.counts()[.running] == 201)
        // Each server takes back its own claims at its next start (on SQLite, the one server all).
        var recovered = try await stores[1].records.recover(now: 3_000).attempts
        if engine == .postgresql { recovered += try await stores[0].records.recover(now: 3_000).attempts }
        #expect(recovered == 201)
        #expect(try await stores[0].records.record(cid: sample.cid)?.interruptions == 1)
        #expect(try await stores[0].records.nextDue() == 3_000)
    }
    // MARK: Scheduler

    /// Scheduler records on a new ODB of `engine`, and the objects store on the same ODB (a
    /// sync writes only for jobs stored as the reloading server read them).
    static func scheduler(_ engine: ODB.Engine, server: String = "a") async throws -> (any SchedulerRecords, ObjectStore) {
        try await scheduler(try await TestODB.make(engine), server: server)
    }

    static func scheduler(_ odb: ODB, server: String = "a") async throws -> (any SchedulerRecords, ObjectStore) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("esb-records-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SecretBox.createKeyFile(at: directory + "/secret.key")
        let store = ObjectStore(odb: odb, secrets: try SecretBox(keyFile: directory + "/secret.key"), kinds: ObjectKinds.all)
        switch odb.connection {
        case .sqlite(let pool): return (SQLiteSchedulerRecords(pool: pool, server: server), store)
        case .postgresql(let postgres):
            // The server is alive as a cluster member is: a fresh heartbeat in esb_server.
            try await postgres.execute("""
                INSERT INTO esb_server(name, last_seen) VALUES (\(server), \(unescaped: PostgresClusterRecords.now))
                """, logger: TestODB.logger)
            return (PostgresSchedulerRecords(odb: postgres, server: server, leaseMS: 30_000), store)
        }
    }

    /// Stores job `name` (every second) and returns its stored body.
    static func storeJob(_ store: ObjectStore, _ name: String, seconds: Int = 1) async throws -> String {
        _ = try? await store.delete(ObjectKinds.scheduler, name)
        _ = try await store.create(ObjectKinds.scheduler, ["name": .string(name), "service": .string("s"),
                                                           "job_type": .string("interval_based"), "seconds": .int(seconds)])
        return try #require(try await store.listStored(ObjectKinds.scheduler).first { $0.fields["name"]?.string == name }?.body)
    }

    static func reset(_ job: String, _ key: String, next: Int64?, body: String) -> JobSync {
        JobSync(change: .reset, state: JobState(job: job, scheduleKey: key, anchor: 0, nextRunAt: next, runsDone: 0), body: body)
    }

    /// A plan that starts a run of every due job and moves it on by a second.
    static func startAll(now: Int64) -> @Sendable ([JobState]) -> [ClaimOutcome] {
        { states in
            states.map { state in
                ClaimOutcome(job: state.job, nextRunAt: (state.nextRunAt ?? now) + 1000, runsDone: state.runsDone + 1,
                             start: JobRun(job: state.job, cid: "cid-\(state.job)-\(state.nextRunAt ?? 0)", scheduledAt: state.nextRunAt ?? now,
                                           startedAt: now, status: .running, server: "a"))
            }
        }
    }

    @Test(arguments: ODB.Engine.allCases)
    func aDueRunIsClaimedOnceEvenByConcurrentClaimers(engine: ODB.Engine) async throws {
        let (records, store) = try await Self.scheduler(engine)
        let body = try await Self.storeJob(store, "j")
        try await records.sync([Self.reset("j", "k1", next: 1000, body: body)])
        // A sync with the same schedule key keeps the state (a restart does not reset it); one
        // computed from an older copy of the job (another body) changes nothing.
        try await records.sync([Self.reset("j", "k1", next: 9999, body: body)])
        try await records.sync([Self.reset("j", "k0", next: 5555, body: "{\"an\":\"older copy\"}")])
        #expect(try await records.states()["j"]?.nextRunAt == 1000)
        let claims = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 {
                group.addTask { try await records.claim(now: 1500, jobs: nil, orphans: [], foreignAfter: 3000, limit: 10, ends: [], Self.startAll(now: 1500)).count }
            }
            return try await group.reduce(0, +)
        }
        #expect(claims == 1, "one claimer gets the due run")
        let state = try #require(try await records.states()["j"])
        #expect(state.nextRunAt == 2000 && state.runsDone == 1 && state.runningCID == "cid-j-1000")
        #expect(try await records.claim(now: 1500, jobs: nil, orphans: [], foreignAfter: 3000, limit: 10, ends: [], Self.startAll(now: 1500)).isEmpty)
        // Busy: no manual run; finished: free again, the run recorded.
        let manual = JobRun(job: "j", cid: "manual", scheduledAt: 1600, startedAt: 1600, status: .running, server: "a")
        #expect(try await records.startManual(manual, busy: { $0 == "cid-j-1000" }) == false)
        // A timed-out run is recorded but keeps the job until its call returns.
        try await records.finish([JobRun(job: "j", cid: "cid-j-1000", scheduledAt: 1000, startedAt: 1500, finishedAt: 1510,
                                         durationMS: 10, status: .ok, server: "a")], release: false)
        #expect(try await records.states()["j"]?.runningCID == "cid-j-1000")
        try await records.release(job: "j", cid: "cid-j-1000")
        #expect(try await records.states()["j"]?.runningCID == nil)
        #expect(try await records.startManual(manual, busy: { _ in false }) == true)
        #expect(try await records.recover(now: 1700) == 1, "the manual run was cut: interrupted")
        let runs = try await records.runs(job: "j", limit: 10)
        #expect(runs.map(\.cid) == ["manual", "cid-j-1000"], "newest first")
        #expect(runs.map(\.status) == [.interrupted, .ok])
        #expect(try await records.lastRuns()["j"]?.cid == "manual")
        // A changed schedule restarts it; pausing keeps the runs done.
        try await records.sync([Self.reset("j", "k2", next: 7000, body: body)])
        #expect(try await records.states()["j"]?.nextRunAt == 7000)
        try await records.sync([JobSync(change: .toggle, state: JobState(job: "j", scheduleKey: "k2", active: false, anchor: 0,
                                                                          nextRunAt: nil, runsDone: 0), body: body)])
        let paused = try #require(try await records.states()["j"])
        #expect(paused.active == false && paused.nextRunAt == nil)
        // A job whose object is gone loses its state and runs, whoever syncs.
        try await store.delete(ObjectKinds.scheduler, "j")
        try await records.sync([])
        #expect(try await records.states()["j"] == nil)
        #expect(try await records.runs(job: "j", limit: 10).isEmpty)
    }

    @Test(arguments: ODB.Engine.allCases)
    func runsArePrunedToTheNewestPerJob(engine: ODB.Engine) async throws {
        let (records, store) = try await Self.scheduler(engine)
        try await records.sync([Self.reset("p", "k", next: 0, body: try await Self.storeJob(store, "p"))])
        for index in 0..<12 {
            let due = Int64(index) * 1000
            let outcomes = try await records.claim(now: due, jobs: nil, orphans: [], foreignAfter: 3000, limit: 10, ends: []) { states in
                states.map { ClaimOutcome(job: $0.job, nextRunAt: due + 1000, runsDone: 0,
                                          record: JobRun(job: $0.job, cid: "r\(index)", scheduledAt: due, startedAt: due, finishedAt: due,
                                                         durationMS: 0, status: .skipped, error: "busy", server: "a")) }
            }
            #expect(outcomes.count == 1)
        }
        #expect(try await records.prune(keep: 5) == 7)
        #expect(try await records.runs(job: "p", limit: 100).map(\.cid) == ["r11", "r10", "r9", "r8", "r7"])
    }
}

/// One transaction of writes alone, its refusal as a value: what these tests compare.
extension ObjectRecords {
    /// Applies `writes` in one transaction when every condition holds; otherwise writes
    /// nothing and returns every failure, in the order of `writes`.
    func apply(_ writes: [ObjectWrite]) async throws -> [ObjectWriteFailure] {
        do {
            try await transact(reading: []) { _ in (writes, ()) }
            return []
        } catch let refused as ObjectWritesRefused {
            return refused.failures
        }
    }

}
