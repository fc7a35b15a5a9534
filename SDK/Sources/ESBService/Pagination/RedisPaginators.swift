import Foundation
import Synchronization

/// A paginator over a Redis list (LLEN once, then LRANGE per page).
public actor ListPaginator: _NonisolatedPaginator {
    public let perPage: Int
    public let orphans: Int
    public let allowEmptyFirstPage: Bool
    private let kvdb: KVDB
    private let key: String
    /// The count once read, -1 before: atomic, so that reads need no hop onto the actor.
    private let cachedCount = Atomic<Int>(-1)

    public init(kvdb: KVDB, key: String, perPage: Int, orphans: Int = 0, allowEmptyFirstPage: Bool = true) {
        self.kvdb = kvdb
        self.key = key
        self.perPage = perPage
        self.orphans = orphans
        self.allowEmptyFirstPage = allowEmptyFirstPage
    }

    @_documentation(visibility: internal)
    public nonisolated var _settings: PaginatorSettings {
        PaginatorSettings(perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage, name: "ListPaginator")
    }

    @_documentation(visibility: internal)
    public nonisolated(nonsending) func _count() async throws -> Int {
        let cached = cachedCount.load(ordering: .relaxed)
        if cached >= 0 { return cached }
        let counted = try await RedisPagination.integer(kvdb.execute(["LLEN", key]), "LLEN", key)
        cachedCount.store(counted, ordering: .relaxed)
        return counted
    }

    @_documentation(visibility: internal)
    public nonisolated(nonsending) func _fetch(_ range: Range<Int>) async throws -> (items: [String], scores: [Double]?) {
        guard try RedisPagination.check(range, of: "ListPaginator") else { return ([], nil) }
        let reply = try await kvdb.execute(["LRANGE", key, String(range.lowerBound), String(range.upperBound - 1)])
        return (RedisPagination.strings(reply), nil)
    }
}

/// A paginator over a sorted set in score order: the whole set (ZCARD, ZRANGE), or only the
/// members with min ≤ score ≤ max (ZCOUNT, ZRANGEBYSCORE … LIMIT), with Redis bound syntax
/// (`-inf`, `+inf`, `(5`). Optionally highest score first, and with the scores.
public actor ZSetPaginator: _NonisolatedPaginator {
    public let perPage: Int
    public let orphans: Int
    public let allowEmptyFirstPage: Bool
    private let kvdb: KVDB
    private let key: String
    private let scores: (min: String, max: String)?
    private let descending: Bool
    private let withScores: Bool
    /// The count once read, -1 before: atomic, so that reads need no hop onto the actor.
    private let cachedCount = Atomic<Int>(-1)

    /// The whole set.
    public init(kvdb: KVDB, key: String, perPage: Int, orphans: Int = 0, allowEmptyFirstPage: Bool = true,
                descending: Bool = false, withScores: Bool = false) {
        self.init(kvdb: kvdb, key: key, scores: nil, perPage: perPage, orphans: orphans,
                  allowEmptyFirstPage: allowEmptyFirstPage, descending: descending, withScores: withScores)
    }

    /// Members with `scoreMin` ≤ score ≤ `scoreMax` (Redis syntax: `-inf`, `+inf`, `(5` exclusive).
    public init(kvdb: KVDB, key: String, scoreMin: String, scoreMax: String, perPage: Int, orphans: Int = 0,
                allowEmptyFirstPage: Bool = true, descending: Bool = false, withScores: Bool = false) {
        self.init(kvdb: kvdb, key: key, scores: (scoreMin, scoreMax), perPage: perPage, orphans: orphans,
                  allowEmptyFirstPage: allowEmptyFirstPage, descending: descending, withScores: withScores)
    }

    private init(kvdb: KVDB, key: String, scores: (min: String, max: String)?, perPage: Int, orphans: Int,
                 allowEmptyFirstPage: Bool, descending: Bool, withScores: Bool) {
        self.kvdb = kvdb
        self.key = key
        self.scores = scores
        self.perPage = perPage
        self.orphans = orphans
        self.allowEmptyFirstPage = allowEmptyFirstPage
        self.descending = descending
        self.withScores = withScores
    }

    @_documentation(visibility: internal)
    public nonisolated var _settings: PaginatorSettings {
        PaginatorSettings(perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage, name: "ZSetPaginator")
    }

    @_documentation(visibility: internal)
    public nonisolated(nonsending) func _count() async throws -> Int {
        let cached = cachedCount.load(ordering: .relaxed)
        if cached >= 0 { return cached }
        let command = scores.map { ["ZCOUNT", key, $0.min, $0.max] } ?? ["ZCARD", key]
        let counted = try await RedisPagination.integer(kvdb.execute(command), command[0], key)
        cachedCount.store(counted, ordering: .relaxed)
        return counted
    }

    @_documentation(visibility: internal)
    public nonisolated(nonsending) func _fetch(_ range: Range<Int>) async throws -> (items: [String], scores: [Double]?) {
        guard try RedisPagination.check(range, of: "ZSetPaginator") else { return (items: [], scores: withScores ? [] : nil) }
        var command: [String]
        if let scores {
            command = descending ? ["ZREVRANGEBYSCORE", key, scores.max, scores.min] : ["ZRANGEBYSCORE", key, scores.min, scores.max]
            if withScores { command.append("WITHSCORES") }
            command += ["LIMIT", String(range.lowerBound), String(range.count)]
        } else {
            command = [descending ? "ZREVRANGE" : "ZRANGE", key, String(range.lowerBound), String(range.upperBound - 1)]
            if withScores { command.append("WITHSCORES") }
        }
        let values = RedisPagination.strings(try await kvdb.execute(command))
        guard withScores else { return (values, nil) }
        let members = stride(from: 0, to: values.count - 1, by: 2).map { values[$0] }
        let scores = stride(from: 1, to: values.count, by: 2).map { Double(values[$0]) ?? .nan }
        return (members, scores)
    }
}

enum RedisPagination {
    /// Whether `range` has items to fetch; a range below 0 is `argument.invalid`.
    static func check(_ range: Range<Int>, of paginator: String) throws -> Bool {
        guard range.lowerBound >= 0 else {
            throw ServiceError.invalidArgument("\(paginator).fetch", "range", range, allowed: "a range from 0 on")
        }
        return !range.isEmpty
    }

    static func integer(_ reply: RedisValue, _ command: String, _ key: String) throws -> Int {
        guard case .int(let value) = reply else {
            throw ServiceError(.kvdbReplyError, "kvdb \(command) \(key): expected an integer reply, got \(reply)")
        }
        return value
    }

    static func strings(_ reply: RedisValue) -> [String] {
        guard case .array(let values) = reply else { return [] }
        return values.map { $0.text ?? "" }
    }
}
