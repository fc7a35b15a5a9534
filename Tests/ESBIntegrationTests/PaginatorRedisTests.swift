import ESBCore
import ESBService
import Foundation
import Testing

/// What the paginators ask Redis, proven with Redis's own INFO commandstats and MONITOR;
/// descending order and scores.
@Suite struct PaginatorRedisTests {
    /// Calls per command since the last CONFIG RESETSTAT, from INFO commandstats.
    static func calls(_ kvdb: KVDBService) async throws -> [String: Int] {
        let info = try await kvdb.execute(["INFO", "commandstats"]).text ?? ""
        var calls: [String: Int] = [:]
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let name = line.dropFirst("cmdstat_".count).prefix { $0 != ":" }
            if let range = line.range(of: "calls="), let count = Int(line[range.upperBound...].prefix { $0.isNumber }) {
                calls[String(name)] = count
            }
        }
        // Our own probes (Redis 7 names subcommands `config|resetstat`).
        return calls.filter { !$0.key.hasPrefix("info") && !$0.key.hasPrefix("config") }
    }

    @Test func aPageReadsTheCountOnceAndOnlyItsRangeAndAnEmptyPageNoRange() async throws {
        let redis = try await PrivateRedis()
        let (context, kvdb) = KVDBHost.context(port: redis.port)
        _ = try await kvdb.execute(["RPUSH", "items"] + (1...100).map(String.init))
        _ = try await kvdb.execute(["CONFIG", "RESETSTAT"])
        let paginator = ListPaginator(kvdb: context.kvdb, key: "items", perPage: 25)
        #expect(try await paginator.page(2).objectList == (26...50).map(String.init))
        #expect(try await Self.calls(kvdb) == ["llen": 1, "lrange": 1])
        _ = try await paginator.page(4)
        _ = try await paginator.numPages
        await #expect(throws: PaginationError.emptyPage(message: "That page contains no results")) { try await paginator.page(5) }
        #expect(try await Self.calls(kvdb) == ["llen": 1, "lrange": 2], "count cached; no LRANGE for a page that does not exist")

        _ = try await kvdb.execute(["CONFIG", "RESETSTAT"])
        let empty = ListPaginator(kvdb: context.kvdb, key: "nothing", perPage: 25)
        #expect(try await empty.page(1).objectList.isEmpty)
        #expect(try await Self.calls(kvdb) == ["llen": 1], "an empty page issues no LRANGE")
    }

    /// Issue 20: ListPaginator and ZSetPaginator read pages on the calling service thread:
    /// no hop onto their actors, and Redis called in place (no hand-off to the pool's threads).
    @Test func pagesAreReadOnTheCallingServiceThreadWithNoHop() async throws {
        let redis = try await PrivateRedis()
        let (context, kvdb) = KVDBHost.context(port: redis.port)
        _ = try await kvdb.pipeline([["RPUSH", "items"] + (1...100).map(String.init), ["ZADD", "set", "1", "a", "2", "b", "3", "c"]])
        let executor = CountingExecutor()
        defer { executor.shutdown() }
        let handOffsBefore = kvdb.handOffs
        let (direct, viaProtocol) = try await withTaskExecutorPreference(executor) { () async throws -> (Int, Int) in
            let list = ListPaginator(kvdb: context.kvdb, key: "items", perPage: 25)
            let set = ZSetPaginator(kvdb: context.kvdb, key: "set", perPage: 2)
            let start = executor.enqueued
            for number in 1...4 { #expect(try await list.page(number).count == 25) }
            #expect(try await list.getPage("9").number == 4)
            #expect(try await set.page(2).objectList == ["c"])
            #expect(try await list.numPages == 4)
            let direct = executor.enqueued - start
            // The same reads through the protocol's actor-isolated methods hop.
            func read(_ paginator: some Paginator) async throws -> Int { try await paginator.page(1).count }
            let before = executor.enqueued
            #expect(try await read(ListPaginator(kvdb: context.kvdb, key: "items", perPage: 25)) == 25)
            return (direct, executor.enqueued - before)
        }
        #expect(direct == 0, "no hop for pages of ListPaginator and ZSetPaginator")
        #expect(viaProtocol > 0, "the counter sees the actor's hops")
        #expect(kvdb.handOffs == handOffsBefore, "every Redis call ran on the service thread")
    }

    @Test func aScoreRangeCountsWithZCOUNTAndReadsOnlyThePageWithLIMIT() async throws {
        let redis = try await PrivateRedis()
        let (context, kvdb) = KVDBHost.context(port: redis.port)
        _ = try await kvdb.execute(["ZADD", "scores"] + (1...1000).flatMap { [String($0), "m\($0)"] })
        let monitorLog = TestEnvironment.temporaryDirectory("monitor") + "/monitor.log"
        let monitor = Process()
        monitor.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        monitor.arguments = ["redis-cli", "-p", String(redis.port), "monitor"]
        _ = FileManager.default.createFile(atPath: monitorLog, contents: nil)
        monitor.standardOutput = FileHandle(forWritingAtPath: monitorLog)
        monitor.standardError = FileHandle.nullDevice
        try monitor.run()
        defer { monitor.terminate() }
        try await Task.sleep(for: .milliseconds(300))
        _ = try await kvdb.execute(["CONFIG", "RESETSTAT"])

        let paginator = ZSetPaginator(kvdb: context.kvdb, key: "scores", scoreMin: "(100", scoreMax: "+inf", perPage: 25)
        let page = try await paginator.page(3)
        #expect(page.objectList == (151...175).map { "m\($0)" })
        #expect(try await paginator.count == 900)
        #expect(try await Self.calls(kvdb) == ["zcount": 1, "zrangebyscore": 1])
        try await Task.sleep(for: .milliseconds(300))
        let log = (try? String(contentsOfFile: monitorLog, encoding: .utf8)) ?? ""
        #expect(log.contains(#""ZCOUNT" "scores" "(100" "+inf""#), "\(log)")
        #expect(log.contains(#""ZRANGEBYSCORE" "scores" "(100" "+inf" "LIMIT" "50" "25""#), "\(log)")
    }

    @Test func sortedSetsPageDescendingAndWithScores() async throws {
        let redis = try await PrivateRedis()
        let (context, kvdb) = KVDBHost.context(port: redis.port)
        _ = try await kvdb.execute(["ZADD", "board"] + (1...10).flatMap { [String(Double($0) / 2), "p\($0)"] })
        let top = ZSetPaginator(kvdb: context.kvdb, key: "board", perPage: 3, descending: true, withScores: true)
        let first = try await top.page(1)
        #expect(first.objectList == ["p10", "p9", "p8"])
        #expect(first.scores == [5.0, 4.5, 4.0])
        let ranged = ZSetPaginator(kvdb: context.kvdb, key: "board", scoreMin: "1", scoreMax: "(3", perPage: 2, descending: true)
        #expect(try await ranged.count == 4)
        #expect(try await ranged.page(1).objectList == ["p5", "p4"])
        #expect(try await ranged.page(2).objectList == ["p3", "p2"])
        #expect(try await ranged.page(1).scores == nil)
    }
}
