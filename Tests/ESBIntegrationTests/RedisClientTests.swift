import ESBCore
import ESBRedis
import Foundation
import Testing

/// The hiredis wrapper and its pool against real Redis servers of the tests' own.
@Suite struct RedisClientTests {
    static func client(_ redis: PrivateRedis, database: Int = 0, poolSize: Int = 2) -> RedisClient {
        var configuration = RedisConfiguration()
        configuration.port = redis.port
        configuration.password = redis.password
        configuration.unixSocketPath = redis.socketPath
        configuration.database = database
        configuration.poolSize = poolSize
        configuration.timeoutMilliseconds = 1000
        return RedisClient(configuration)
    }

    @Test func everyReplyTypeAndPipelinesKeepErrorRepliesInPlace() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis)
        defer { client.shutdown() }
        let binary = "a\u{0}b\r\nc"
        let replies = try await client.pipeline([
            ["SET", "k", binary], ["GET", "k"], ["INCR", "n"], ["GET", "missing"],
            ["RPUSH", "l", "x", "y"], ["LRANGE", "l", "0", "-1"], ["PING"], ["INCR", "k"],
        ])
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .string(Data(binary.utf8)))
        #expect(replies[2] == .int(1))
        #expect(replies[3] == .null)
        #expect(replies[4] == .int(2))
        #expect(replies[5] == .array([.string(Data("x".utf8)), .string(Data("y".utf8))]))
        #expect(replies[6] == .status("PONG"))
        guard case .error(let text) = replies[7] else { Issue.record("expected an error reply"); return }
        #expect(text.contains("not an integer"))
        let error = await #expect(throws: RedisError.self) { try await client.execute(["LPUSH", "k", "v"]) }
        #expect(error?.code == .reply)
        #expect(error?.message.contains("WRONGTYPE") == true)
    }

    @Test func authenticatesSelectsTheDatabaseAndUsesAUnixSocket() async throws {
        let redis = try await PrivateRedis(password: "pw-\(UUID().uuidString.prefix(6))", unixSocket: true)
        let client = Self.client(redis, database: 3)
        defer { client.shutdown() }
        _ = try await client.execute(["SET", "where", "db3"])
        var configuration = RedisConfiguration()
        configuration.port = redis.port
        configuration.password = redis.password
        let other = RedisClient(configuration)  // TCP, db 0
        defer { other.shutdown() }
        #expect(try await other.execute(["GET", "where"]) == .null)
        #expect(try await other.pipeline([["SELECT", "3"], ["GET", "where"]])[1] == .string(Data("db3".utf8)))

        configuration.password = "wrong"
        let refused = RedisClient(configuration)
        defer { refused.shutdown() }
        let error = await #expect(throws: RedisError.self) { try await refused.execute(["PING"]) }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("AUTH") == true)
    }

    @Test func aReplyLaterThanTheTimeoutIsATimeoutAndTheNextCallWorks() async throws {
        let redis = try await PrivateRedis()
        var configuration = RedisConfiguration()
        configuration.port = redis.port
        configuration.poolSize = 1
        configuration.timeoutMilliseconds = 300
        let client = RedisClient(configuration)
        defer { client.shutdown() }
        let error = await #expect(throws: RedisError.self) { try await client.execute(["BLPOP", "never-filled", "2"]) }
        #expect(error?.code == .timeout)
        #expect(error?.message.contains("300 ms") == true)
        #expect(try await client.execute(["PING"]) == .status("PONG"), "a fresh connection replaces the timed-out one")
    }

    @Test func redisRestartFailsCallsFastThenRecoversByItself() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis, poolSize: 2)
        defer { client.shutdown() }
        _ = try await client.execute(["SET", "before", "1"])
        try await redis.kill()
        var failures: [RedisError.Code: Int] = [:]
        for _ in 0..<20 {
            do {
                _ = try await client.execute(["PING"])
                Issue.record("a call succeeded with Redis down")
            } catch let error as RedisError {
                failures[error.code, default: 0] += 1
            }
        }
        #expect(failures[.unavailable] == 20, "\(failures)")
        #expect(client.status.connected == 0)
        #expect(client.status.lastError?.contains("127.0.0.1:\(redis.port)") == true)
        try await redis.start()
        var recovered = false
        for _ in 0..<100 where !recovered {
            recovered = (try? await client.execute(["PING"])) == .status("PONG")
            if !recovered { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(recovered)
    }

    // MARK: - Calls on the calling service thread (issue 20)

    @Test func callsFromServiceThreadsBorrowAConnectionWithNoHandOff() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis, poolSize: 2)
        defer { client.shutdown() }
        let executor = ServiceExecutor(threads: 2)
        let counted = try await withTaskExecutorPreference(executor) {
            var last = RedisReply.null
            for _ in 0..<50 { last = try await client.execute(["INCR", "calls"]) }
            return last
        }
        #expect(counted == .int(50))
        #expect(client.handOffs == 0, "every call ran on the service thread that made it")
        #expect(try await client.execute(["GET", "calls"]) == .string(Data("50".utf8)))
        #expect(client.handOffs == 1, "a call from Swift's cooperative pool is handed to the pool's threads")
    }

    @Test func aServiceCallFindingEveryConnectionBusyIsHandedOffAndWaitsItsTurn() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis, poolSize: 1)
        defer { client.shutdown() }
        let executor = ServiceExecutor(threads: 2)
        try await withTaskExecutorPreference(executor) {
            async let blocked = client.execute(["BLPOP", "never-filled", "0.5"])
            try await Task.sleep(for: .milliseconds(150))
            #expect(try await client.execute(["PING"]) == .status("PONG"))
            #expect(try await blocked == .null)
        }
        #expect(client.handOffs == 1)
        #expect(client.status.connected == 1, "the waiting call used the one connection after the first")
    }

    @Test func anIdleConnectionRedisClosedIsReplacedBeforeACallUsesIt() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis, poolSize: 1)
        defer { client.shutdown() }
        let executor = ServiceExecutor(threads: 1)
        try await withTaskExecutorPreference(executor) { _ = try await client.execute(["PING"]) }
        let killer = Self.client(redis, poolSize: 1)
        defer { killer.shutdown() }
        #expect(try await killer.execute(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]) == .int(1))
        try await Task.sleep(for: .milliseconds(1_200))
        let reply = try await withTaskExecutorPreference(executor) { try await client.execute(["PING"]) }
        #expect(reply == .status("PONG"), "the closed connection was noticed before use, not by a failed call")
    }

    @Test func idleConnectionsArePingedAndADeadOneIsDropped() async throws {
        let redis = try await PrivateRedis()
        var configuration = RedisConfiguration()
        configuration.port = redis.port
        configuration.poolSize = 2
        configuration.idlePingMilliseconds = 200
        let client = RedisClient(configuration)
        defer { client.shutdown() }
        _ = try await client.execute(["PING"])
        #expect(client.status.connected == 1)
        let killer = Self.client(redis, poolSize: 1)
        defer { killer.shutdown() }
        _ = try await killer.execute(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        var dropped = false
        for _ in 0..<50 where !dropped {
            try await Task.sleep(for: .milliseconds(100))
            dropped = client.status.connected == 0
        }
        #expect(dropped, "the housekeeping found the idle connection dead and dropped it")

        // A live idle connection is sent PING (Redis counts it).
        _ = try await client.execute(["SET", "alive", "1"])
        _ = try await killer.execute(["CONFIG", "RESETSTAT"])
        var pinged = false
        for _ in 0..<50 where !pinged {
            try await Task.sleep(for: .milliseconds(100))
            let stats = try await killer.execute(["INFO", "commandstats"])
            guard case .string(let text) = stats else { continue }
            pinged = String(decoding: text, as: UTF8.self).contains("cmdstat_ping:calls=")
        }
        #expect(pinged, "the housekeeping sent PING on the idle connection")
        #expect(client.status.connected == 1)
    }

    @Test func callsAfterShutdownFailAsClosed() async throws {
        let redis = try await PrivateRedis()
        let client = Self.client(redis, poolSize: 1)
        _ = try await client.execute(["PING"])
        client.shutdown()
        let executor = ServiceExecutor(threads: 1)
        for onServiceThread in [false, true] {
            let error = await #expect(throws: RedisError.self) {
                if onServiceThread {
                    _ = try await withTaskExecutorPreference(executor) { try await client.execute(["PING"]) }
                } else {
                    _ = try await client.execute(["PING"])
                }
            }
            #expect(error?.code == .closed)
        }
    }
}
