import ESBCore
import ESBService
import Foundation
import Testing

/// Django's pagination behaviour (Tests/Vectors) against the three
/// Redis sources, with the items 1…n stored in a real Redis.
@Suite struct PaginatorVectorTests {
    enum Source: CaseIterable { case list, zset, zsetRange }

    /// Stores 1…n once per (source, n) and makes paginators over it.
    actor Fixture {
        let context: ServiceContext
        let kvdb: KVDBService
        let redis: PrivateRedis
        private var stored: Set<String> = []

        init() async throws {
            redis = try await PrivateRedis()
            (context, kvdb) = KVDBHost.context(port: redis.port)
        }

        func paginator(_ source: Source, items: Int, perPage: Int, orphans: Int = 0, allowEmptyFirstPage: Bool = true) async throws -> any Paginator {
            let key = "\(source)-\(items)"
            if !stored.contains(key) {
                stored.insert(key)
                for chunk in stride(from: 1, through: max(items, 1), by: 1000) where items > 0 {
                    let values = Array(chunk...min(items, chunk + 999))
                    switch source {
                    case .list: _ = try await kvdb.execute(["RPUSH", key] + values.map(String.init))
                    case .zset: _ = try await kvdb.execute(["ZADD", key] + values.flatMap { [String($0), String($0)] })
                    case .zsetRange: _ = try await kvdb.execute(["ZADD", key] + values.flatMap { [String($0 + 100), String($0)] })
                    }
                }
                if source == .zsetRange {
                    // Members outside the range, on both sides, that must never show.
                    _ = try await kvdb.execute(["ZADD", key, "1", "below-1", "100", "below-2", "\(items + 101)", "above-1"])
                }
            }
            switch source {
            case .list:
                return ListPaginator(kvdb: context.kvdb, key: key, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage)
            case .zset:
                return ZSetPaginator(kvdb: context.kvdb, key: key, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage)
            case .zsetRange:
                return ZSetPaginator(kvdb: context.kvdb, key: key, scoreMin: "(100", scoreMax: String(items + 100), perPage: perPage,
                                     orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage)
            }
        }
    }

    /// Read-only after first use.
    nonisolated(unsafe) static let vectors: [String: Any] = {
        let path = TestEnvironment.packageRoot + "/Tests/Vectors/django_pagination_vectors.json"
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))) as? [String: Any] ?? [:]
    }()

    static func cases(_ group: String) -> [[String: Any]] { vectors[group] as? [[String: Any]] ?? [] }

    /// What a call gave, in the vectors' terms: a value, or {error, message}.
    static func outcome<T>(_ body: () async throws -> T) async -> Any {
        do {
            return try await body()
        } catch let error as PaginationError {
            switch error {
            case .pageNotAnInteger(let message): return ["error": "PageNotAnInteger", "message": message]
            case .emptyPage(let message): return ["error": "EmptyPage", "message": message]
            }
        } catch {
            return ["error": "\(error)"]
        }
    }

    static func same(_ actual: Any, _ expected: Any?) -> Bool {
        guard let expected else { return false }
        return NSDictionary(dictionary: ["v": actual]).isEqual(to: ["v": expected])
    }

    /// Some vectors give per_page and orphans as strings and the flag as 0/1, which Django
    /// passes through int() and truth; the Swift API takes them typed.
    func settings(_ vector: [String: Any]) -> (Int, Int, Int, Bool) {
        func integer(_ key: String, _ fallback: Int) -> Int {
            if let number = vector[key] as? Int { return number }
            if let text = vector[key] as? String, let number = Int(text) { return number }
            return fallback
        }
        let flag = vector["allow_empty_first_page"]
        return (integer("n_items", 0), integer("per_page", 1), integer("orphans", 0),
                (flag as? Bool) ?? ((flag as? Int).map { $0 != 0 } ?? true))
    }

    /// A page-number input the Swift API can take (int or string), or nil (out of scope).
    func input(_ vector: [String: Any]) -> PageInput? {
        guard let input = vector["input"] as? [String: Any] else { return nil }
        switch input["type"] as? String {
        case "int": return (input["value"] as? Int).map(PageInput.int)
        case "str": return (input["value"] as? String).map(PageInput.string)
        default: return nil
        }
    }

    enum PageInput { case int(Int), string(String) }

    @Test(arguments: Source.allCases) func paginatorCountsPagesAndRanges(source: Source) async throws {
        let fixture = try await Fixture()
        var checked = 0
        for vector in Self.cases("paginator") + Self.cases("paginator_orphans_ge_per_page") {
            guard vector["n_items"] is Int else { continue }
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            #expect(try await paginator.count == vector["count"] as? Int, "\(vector)")
            let numPages = try await paginator.numPages, count = try await paginator.count
            #expect(numPages == vector["num_pages"] as? Int, "\(vector) gave \(numPages) from count \(count)")
            #expect(Array(try await paginator.pageRange) == vector["page_range"] as? [Int], "\(vector)")
            checked += 1
        }
        #expect(checked > 30)
    }

    @Test(arguments: Source.allCases) func pagesMatchDjango(source: Source) async throws {
        let fixture = try await Fixture()
        for vector in Self.cases("pages") {
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            let page = try await paginator.page(vector["page_number"] as? Int ?? 1)
            #expect(page.objectList == (vector["object_list"] as? [Int])?.map(String.init), "\(vector)")
            #expect(page.count == vector["len"] as? Int)
            #expect(page.startIndex() == vector["start_index"] as? Int)
            #expect(page.endIndex() == vector["end_index"] as? Int)
            #expect(page.hasNext == vector["has_next"] as? Bool)
            #expect(page.hasPrevious == vector["has_previous"] as? Bool)
            #expect(page.hasOtherPages == vector["has_other_pages"] as? Bool)
            #expect(page.description == vector["repr"] as? String)
            #expect(Self.same(await Self.outcome { try page.nextPageNumber() }, vector["next_page_number"]), "\(vector)")
            #expect(Self.same(await Self.outcome { try page.previousPageNumber() }, vector["previous_page_number"]), "\(vector)")
        }
        for vector in Self.cases("page_indexes") {
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            let number = vector["page"] as? String == "last" ? try await paginator.numPages : 1
            if let expected = vector["expect_error"] {
                #expect(Self.same(await Self.outcome { try await paginator.page(number).number }, expected), "\(vector)")
                continue
            }
            let page = try await paginator.page(number)
            #expect(page.startIndex() == vector["start_index"] as? Int, "\(vector)")
            #expect(page.endIndex() == vector["end_index"] as? Int, "\(vector)")
        }
        if let sequence = Self.vectors["page_sequence"] as? [String: Any] {
            let (items, perPage, orphans, allowEmpty) = settings(sequence)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            let page = try await paginator.page(sequence["page_number"] as? Int ?? 1)
            #expect(Array(page) == (sequence["iterated"] as? [Int])?.map(String.init))
            #expect(page.reversed() == (sequence["reversed"] as? [Int])?.map(String.init))
            #expect(page[0] == (sequence["getitem_0"] as? Int).map(String.init))
            #expect(page[-1] == (sequence["getitem_minus_1"] as? Int).map(String.init))
            #expect(page.contains("11") == sequence["contains_11"] as? Bool)
            #expect(page.contains("1") == sequence["contains_1"] as? Bool)
        }
        for vector in Self.cases("iteration") {
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            var pages: [[String]] = [], reprs: [String] = []
            for number in try await paginator.pageRange {
                let page = try await paginator.page(number)
                pages.append(page.objectList)
                reprs.append(page.description)
            }
            #expect(pages == (vector["pages"] as? [[Int]])?.map { $0.map(String.init) })
            #expect(reprs == vector["reprs"] as? [String])
        }
    }

    @Test(arguments: Source.allCases) func pageNumbersAreValidatedAsDjangoDoes(source: Source) async throws {
        let fixture = try await Fixture()
        var checked = 0
        for vector in Self.cases("validate_number") {
            guard let input = input(vector) else { continue }
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            let page = vector["method"] as? String == "page"
            let actual: Any = switch input {
            case .int(let number): await Self.outcome { page ? try await paginator.page(number).number : try await paginator.validateNumber(number) }
            case .string(let text): await Self.outcome { page ? try await paginator.page(text).number : try await paginator.validateNumber(text) }
            }
            #expect(Self.same(actual, vector["result"]), "\(vector) gave \(actual)")
            checked += 1
        }
        for vector in Self.cases("get_page") {
            guard let input = input(vector) else { continue }
            let (items, perPage, orphans, allowEmpty) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmpty)
            let actual: Any = switch input {
            case .int(let number): await Self.outcome { try await paginator.getPage(number).number }
            case .string(let text): await Self.outcome { try await paginator.getPage(text).number }
            }
            #expect(Self.same(actual, vector["result"]), "\(vector) gave \(actual)")
            checked += 1
        }
        #expect(checked > 100)
    }

    @Test(arguments: Source.allCases) func elidedPageRangesMatchDjango(source: Source) async throws {
        let fixture = try await Fixture()
        for vector in Self.cases("elided_page_range") {
            let (items, perPage, _, _) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage)
            let number = vector["number"] as? Int ?? 1
            let actual = await Self.outcome {
                try await paginator.getElidedPageRange(number, onEachSide: vector["on_each_side"] as? Int ?? 3,
                                                       onEnds: vector["on_ends"] as? Int ?? 2).map { item -> Any in
                    if case .page(let page) = item { return page }
                    return item.description
                }
            }
            #expect(Self.same(actual, vector["expected"]), "\(vector) gave \(actual)")
        }
        for vector in Self.cases("elided_threshold") {
            let (items, perPage, _, _) = settings(vector)
            let paginator = try await fixture.paginator(source, items: items, perPage: perPage)
            let range = try await paginator.getElidedPageRange(vector["number"] as? Int ?? 1, onEachSide: vector["on_each_side"] as? Int ?? 3,
                                                               onEnds: vector["on_ends"] as? Int ?? 2)
            #expect(range.contains(.ellipsis) == vector["elided"] as? Bool, "\(vector)")
            #expect(range.map(\.description) == (vector["list"] as? [Any])?.map { "\($0)" }, "\(vector)")
        }
    }
}
