import ESBService
import Foundation
import Testing

/// A grid of cases computed by the real Django (scripts/testkit/django_cases.py: item counts,
/// per_page, orphans, allow_empty_first_page, page numbers as ints and strings such as
/// " 2 ", "+2", "1_0", "1.0", "x", "٣"), compared call by call on the three Redis sources.
@Suite struct PaginatorDjangoTests {
    static func djangoCases() async throws -> [[String: Any]] {
        let result = try await runCommand("/usr/bin/env", ["python3", TestEnvironment.packageRoot + "/scripts/testkit/django_cases.py"])
        guard result.status == 0 else { throw AMQPPeer.PeerError(message: "django_cases.py: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] ?? []
    }

    static func facts(_ page: Page) -> [String: Any] {
        ["number": page.number, "object_list": page.objectList.map { Int($0) ?? -1 }, "start_index": page.startIndex(),
         "end_index": page.endIndex(), "has_next": page.hasNext, "has_previous": page.hasPrevious]
    }

    @Test(arguments: PaginatorVectorTests.Source.allCases) func everyCallMatchesDjango(source: PaginatorVectorTests.Source) async throws {
        let cases = try await Self.djangoCases()
        #expect(cases.count > 400)
        let fixture = try await PaginatorVectorTests.Fixture()
        var compared = 0, mismatches = 0
        for grid in cases {
            let paginator = try await fixture.paginator(
                source, items: grid["n_items"] as? Int ?? 0, perPage: grid["per_page"] as? Int ?? 1,
                orphans: grid["orphans"] as? Int ?? 0, allowEmptyFirstPage: grid["allow_empty_first_page"] as? Bool ?? true)
            #expect(try await paginator.count == grid["count"] as? Int)
            #expect(try await paginator.numPages == grid["num_pages"] as? Int)
            for entry in grid["inputs"] as? [[String: Any]] ?? [] {
                let results: [(String, Any)]
                if let number = entry["input"] as? Int {
                    results = [
                        ("validate_number", await PaginatorVectorTests.outcome { try await paginator.validateNumber(number) }),
                        ("page", await PaginatorVectorTests.outcome { Self.facts(try await paginator.page(number)) }),
                        ("get_page", await PaginatorVectorTests.outcome { Self.facts(try await paginator.getPage(number)) }),
                        ("elided", await PaginatorVectorTests.outcome {
                            try await paginator.getElidedPageRange(number, onEachSide: 1, onEnds: 1).map(\.description) }),
                    ]
                } else {
                    let text = entry["input"] as? String ?? ""
                    results = [
                        ("validate_number", await PaginatorVectorTests.outcome { try await paginator.validateNumber(text) }),
                        ("page", await PaginatorVectorTests.outcome { Self.facts(try await paginator.page(text)) }),
                        ("get_page", await PaginatorVectorTests.outcome { Self.facts(try await paginator.getPage(text)) }),
                        ("elided", await PaginatorVectorTests.outcome {
                            try await paginator.getElidedPageRange(text, onEachSide: 1, onEnds: 1).map(\.description) }),
                    ]
                }
                for (call, actual) in results {
                    compared += 1
                    if !PaginatorVectorTests.same(actual, entry[call]) {
                        mismatches += 1
                        if mismatches <= 10 {
                            Issue.record("\(call)(\(entry["input"] ?? "?")) on n=\(grid["n_items"] ?? 0) per_page=\(grid["per_page"] ?? 0) orphans=\(grid["orphans"] ?? 0) allow=\(grid["allow_empty_first_page"] ?? 0): Django \(entry[call] ?? "nil"), ours \(actual)")
                        }
                    }
                }
            }
        }
        #expect(mismatches == 0)
        #expect(compared > 50_000)
    }
}
