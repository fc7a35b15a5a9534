/// Django's `Paginator` over a Redis source: the same arithmetic, validation, errors and
/// messages, reading only the requested page from Redis.
///
/// The count is read once per paginator and cached, as Django caches it; a page then reads
/// only its own range, and an empty page reads nothing more.
public protocol Paginator: Actor {
    /// Items per page.
    var perPage: Int { get }
    /// Up to this many items left over are folded into the last page.
    var orphans: Int { get }
    /// Whether an empty source still has page 1.
    var allowEmptyFirstPage: Bool { get }
    /// The number of items (one Redis call, then cached).
    var count: Int { get async throws }
    /// The items `range` of the source (0-based), and their scores when asked for; called
    /// only for non-empty pages.
    func fetch(_ range: Range<Int>) async throws -> (items: [String], scores: [Double]?)
}

extension Paginator {
    /// The number of pages.
    /// - Throws: ``ServiceError`` `argument.invalid` when `perPage` is below 1 or `orphans` below 0.
    public var numPages: Int {
        get async throws {
            try PageArithmetic.check(perPage: perPage, orphans: orphans, of: "\(Self.self)")
            return PageArithmetic.numPages(count: try await count, perPage: perPage, orphans: orphans, allowEmptyFirstPage: allowEmptyFirstPage)
        }
    }

    /// `1..<numPages + 1`.
    public var pageRange: Range<Int> {
        get async throws { 1..<(try await numPages + 1) }
    }

    /// The page number if valid. - Throws: ``PaginationError``.
    public func validateNumber(_ number: Int) async throws -> Int {
        try PageArithmetic.validate(number, numPages: try await numPages, allowEmptyFirstPage: allowEmptyFirstPage)
    }

    /// A page number given as text, read as Python's `int()` does (`" 2 "`, `"+2"`, `"1_0"`).
    public func validateNumber(_ number: String) async throws -> Int {
        try PageArithmetic.validate(number, numPages: try await numPages, allowEmptyFirstPage: allowEmptyFirstPage)
    }

    /// Page `number`. - Throws: ``PaginationError``.
    public func page(_ number: Int) async throws -> Page {
        try await makePage(try await validateNumber(number))
    }

    public func page(_ number: String) async throws -> Page {
        try await makePage(try await validateNumber(number))
    }

    /// Page `number`; the first page for a non-integer, the last for one out of range.
    public func getPage(_ number: Int) async throws -> Page {
        try await getPage { try await self.validateNumber(number) }
    }

    public func getPage(_ number: String) async throws -> Page {
        try await getPage { try await self.validateNumber(number) }
    }

    /// Page numbers around `number` with `…` where runs are left out, as Django's
    /// `get_elided_page_range`.
    /// - Throws: ``ServiceError`` `argument.invalid` when `onEachSide` or `onEnds` is negative.
    public func getElidedPageRange(_ number: Int = 1, onEachSide: Int = 3, onEnds: Int = 2) async throws -> [PageRangeItem] {
        try PageArithmetic.check(onEachSide: onEachSide, onEnds: onEnds)
        return PageArithmetic.elided(number: try await validateNumber(number), numPages: try await numPages,
                                     onEachSide: onEachSide, onEnds: onEnds)
    }

    public func getElidedPageRange(_ number: String, onEachSide: Int = 3, onEnds: Int = 2) async throws -> [PageRangeItem] {
        try PageArithmetic.check(onEachSide: onEachSide, onEnds: onEnds)
        return PageArithmetic.elided(number: try await validateNumber(number), numPages: try await numPages,
                                     onEachSide: onEachSide, onEnds: onEnds)
    }

    private func getPage(_ validate: () async throws -> Int) async throws -> Page {
        do {
            return try await makePage(try await validate())
        } catch PaginationError.pageNotAnInteger {
            return try await page(1)
        } catch PaginationError.emptyPage {
            // As Django: the last page, validated again (an empty source without a first page has none).
            return try await page(try await numPages)
        }
    }

    private func makePage(_ number: Int) async throws -> Page {
        let count = try await count
        let bounds = PageArithmetic.bounds(number: number, count: count, perPage: perPage, orphans: orphans)
        let fetched: (items: [String], scores: [Double]?) = bounds.isEmpty ? ([], nil) : try await fetch(bounds)
        return Page(objectList: fetched.items, scores: fetched.scores, number: number,
                    numPages: try await numPages, totalCount: count, perPage: perPage, allowEmptyFirstPage: allowEmptyFirstPage)
    }
}

/// A paginator whose reads need no hop onto its actor: its settings are constants and its
/// count cache is atomic, so `page(_:)` and the rest run on the calling service's thread
/// (``ListPaginator`` and ``ZSetPaginator``). The same methods as ``Paginator``'s, preferred
/// over them for these types; an implementation detail, not for services to adopt.
@_documentation(visibility: internal)
public protocol _NonisolatedPaginator: Paginator {
    /// The paginator's constant settings.
    nonisolated var _settings: PaginatorSettings { get }
    /// The number of items, read once and cached.
    nonisolated(nonsending) func _count() async throws -> Int
    /// The items `range` of the source, as ``Paginator/fetch(_:)``.
    nonisolated(nonsending) func _fetch(_ range: Range<Int>) async throws -> (items: [String], scores: [Double]?)
}

/// A paginator's constant settings (an implementation detail of ``_NonisolatedPaginator``).
@_documentation(visibility: internal)
public struct PaginatorSettings: Sendable {
    let perPage: Int
    let orphans: Int
    let allowEmptyFirstPage: Bool
    let name: String
}

// The methods of the `Paginator` extension above, read with no hop onto the actor. Their
// documentation is theirs.
extension _NonisolatedPaginator {
    // The Paginator witnesses are plain nonisolated: a nonisolated(nonsending) witness of an
    // actor-isolated requirement traps in Swift 6.3's witness thunk.

    /// The number of items (one Redis call: LLEN, ZCARD or ZCOUNT; then cached).
    public nonisolated var count: Int {
        get async throws { try await _count() }
    }

    /// The items `range` of the source (one LRANGE, ZRANGE, ZREVRANGE or ZRANGEBYSCORE … LIMIT).
    public nonisolated func fetch(_ range: Range<Int>) async throws -> (items: [String], scores: [Double]?) {
        try await _fetch(range)
    }

    /// The number of pages.
    /// - Throws: ``ServiceError`` `argument.invalid` when `perPage` is below 1 or `orphans` below 0.
    public nonisolated(nonsending) var numPages: Int {
        get async throws {
            let settings = _settings
            try PageArithmetic.check(perPage: settings.perPage, orphans: settings.orphans, of: settings.name)
            return PageArithmetic.numPages(count: try await _count(), perPage: settings.perPage, orphans: settings.orphans,
                                           allowEmptyFirstPage: settings.allowEmptyFirstPage)
        }
    }

    /// `1..<numPages + 1`.
    public nonisolated(nonsending) var pageRange: Range<Int> {
        get async throws { 1..<(try await numPages + 1) }
    }

    /// The page number if valid. - Throws: ``PaginationError``.
    public nonisolated(nonsending) func validateNumber(_ number: Int) async throws -> Int {
        try PageArithmetic.validate(number, numPages: try await numPages, allowEmptyFirstPage: _settings.allowEmptyFirstPage)
    }

    /// A page number given as text, read as Python's `int()` does.
    public nonisolated(nonsending) func validateNumber(_ number: String) async throws -> Int {
        try PageArithmetic.validate(number, numPages: try await numPages, allowEmptyFirstPage: _settings.allowEmptyFirstPage)
    }

    /// Page `number`. - Throws: ``PaginationError``.
    public nonisolated(nonsending) func page(_ number: Int) async throws -> Page {
        try await makePage(try await validateNumber(number))
    }

    /// Page `number`, given as text. - Throws: ``PaginationError``.
    public nonisolated(nonsending) func page(_ number: String) async throws -> Page {
        try await makePage(try await validateNumber(number))
    }

    /// Page `number`; the first page for a non-integer, the last for one out of range.
    public nonisolated(nonsending) func getPage(_ number: Int) async throws -> Page {
        do {
            return try await makePage(try await validateNumber(number))
        } catch let error as PaginationError {
            return try await fallbackPage(after: error)
        }
    }

    /// Page `number`, given as text; the first page for a non-integer, the last for one out of range.
    public nonisolated(nonsending) func getPage(_ number: String) async throws -> Page {
        do {
            return try await makePage(try await validateNumber(number))
        } catch let error as PaginationError {
            return try await fallbackPage(after: error)
        }
    }

    /// Page numbers around `number` with `…` where runs are left out, as Django's.
    public nonisolated(nonsending) func getElidedPageRange(_ number: Int = 1, onEachSide: Int = 3, onEnds: Int = 2) async throws -> [PageRangeItem] {
        try PageArithmetic.check(onEachSide: onEachSide, onEnds: onEnds)
        return PageArithmetic.elided(number: try await validateNumber(number), numPages: try await numPages,
                                     onEachSide: onEachSide, onEnds: onEnds)
    }

    /// As ``getElidedPageRange(_:onEachSide:onEnds:)-(Int,_,_)``, the number given as text.
    public nonisolated(nonsending) func getElidedPageRange(_ number: String, onEachSide: Int = 3, onEnds: Int = 2) async throws -> [PageRangeItem] {
        try PageArithmetic.check(onEachSide: onEachSide, onEnds: onEnds)
        return PageArithmetic.elided(number: try await validateNumber(number), numPages: try await numPages,
                                     onEachSide: onEachSide, onEnds: onEnds)
    }

    /// As Django: page 1 for a number that is not an integer, the last page (validated
    /// again) for one out of range.
    private nonisolated(nonsending) func fallbackPage(after error: PaginationError) async throws -> Page {
        switch error {
        case .pageNotAnInteger: try await page(1)
        case .emptyPage: try await page(try await numPages)
        }
    }

    private nonisolated(nonsending) func makePage(_ number: Int) async throws -> Page {
        let settings = _settings
        let count = try await _count()
        let bounds = PageArithmetic.bounds(number: number, count: count, perPage: settings.perPage, orphans: settings.orphans)
        let fetched: (items: [String], scores: [Double]?) = bounds.isEmpty ? ([], nil) : try await _fetch(bounds)
        return Page(objectList: fetched.items, scores: fetched.scores, number: number,
                    numPages: PageArithmetic.numPages(count: count, perPage: settings.perPage, orphans: settings.orphans,
                                                      allowEmptyFirstPage: settings.allowEmptyFirstPage),
                    totalCount: count, perPage: settings.perPage, allowEmptyFirstPage: settings.allowEmptyFirstPage)
    }
}
