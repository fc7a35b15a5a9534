/// One page of a paginator, as Django's `Page`: its items and where it sits.
///
/// A `Sequence` of its items with `count` and an `Int` subscript (negative counts from the
/// end, as in Python); not a `Collection`, whose `startIndex` would clash with Django's.
public struct Page: Sequence, Sendable, CustomStringConvertible {
    /// The items on this page (members, for sorted sets).
    public let objectList: [String]
    /// With `withScores`, each member's score; otherwise nil.
    public let scores: [Double]?
    /// 1-based page number.
    public let number: Int
    let numPages: Int
    let totalCount: Int
    let perPage: Int
    let allowEmptyFirstPage: Bool

    /// Items on this page.
    public var count: Int { objectList.count }
    public subscript(index: Int) -> String { objectList[index < 0 ? objectList.count + index : index] }
    public func makeIterator() -> IndexingIterator<[String]> { objectList.makeIterator() }

    public var hasNext: Bool { number < numPages }
    public var hasPrevious: Bool { number > 1 }
    public var hasOtherPages: Bool { hasPrevious || hasNext }

    /// - Throws: ``PaginationError/emptyPage(message:)`` on the last page.
    public func nextPageNumber() throws -> Int {
        try PageArithmetic.validate(number + 1, numPages: numPages, allowEmptyFirstPage: allowEmptyFirstPage)
    }

    /// - Throws: ``PaginationError/emptyPage(message:)`` on the first page.
    public func previousPageNumber() throws -> Int {
        try PageArithmetic.validate(number - 1, numPages: numPages, allowEmptyFirstPage: allowEmptyFirstPage)
    }

    /// The 1-based index of the first item in the whole list (0 when the list is empty).
    public func startIndex() -> Int { totalCount == 0 ? 0 : perPage * (number - 1) + 1 }

    /// The 1-based index of the last item on this page.
    public func endIndex() -> Int { number == numPages ? totalCount : number * perPage }

    /// `<Page 1 of 2>`, as Django's repr.
    public var description: String { "<Page \(number) of \(numPages)>" }
}

/// Django's paginator arithmetic, without I/O.
///
/// Arguments come from requests, so nothing here may trap: sizes are checked before use
/// (``check(perPage:orphans:of:)``) and every sum that could pass `Int.max` saturates.
enum PageArithmetic {
    /// - Throws: ``ServiceError`` `argument.invalid` naming the argument.
    static func check(perPage: Int, orphans: Int, of paginator: String) throws {
        guard perPage >= 1 else { throw ServiceError.invalidArgument(paginator, "perPage", perPage, allowed: "at least 1") }
        guard orphans >= 0 else { throw ServiceError.invalidArgument(paginator, "orphans", orphans, allowed: "0 or more") }
    }

    /// - Throws: ``ServiceError`` `argument.invalid` naming the argument.
    static func check(onEachSide: Int, onEnds: Int) throws {
        guard onEachSide >= 0 else {
            throw ServiceError.invalidArgument("getElidedPageRange", "onEachSide", onEachSide, allowed: "0 or more")
        }
        guard onEnds >= 0 else { throw ServiceError.invalidArgument("getElidedPageRange", "onEnds", onEnds, allowed: "0 or more") }
    }

    static func numPages(count: Int, perPage: Int, orphans: Int, allowEmptyFirstPage: Bool) -> Int {
        if count == 0 && !allowEmptyFirstPage { return 0 }
        let hits = max(1, count - orphans)
        return hits / perPage + (hits % perPage == 0 ? 0 : 1)
    }

    static func validate(_ number: Int, numPages: Int, allowEmptyFirstPage: Bool) throws -> Int {
        if number < 1 { throw PaginationError.emptyPage(message: PaginationError.minPage) }
        if number > numPages {
            throw PaginationError.emptyPage(message: PaginationError.noResults)
        }
        return number
    }

    static func validate(_ number: String, numPages: Int, allowEmptyFirstPage: Bool) throws -> Int {
        guard let parsed = PythonInt.parse(number) else { throw PaginationError.pageNotAnInteger(message: PaginationError.invalidPage) }
        return try validate(parsed, numPages: numPages, allowEmptyFirstPage: allowEmptyFirstPage)
    }

    /// The half-open item range of page `number`: the last page takes up to `orphans` more.
    static func bounds(number: Int, count: Int, perPage: Int, orphans: Int) -> Range<Int> {
        // number ≤ numPages, so the bottom lies within the count; the top may not.
        let bottom = (number - 1) * perPage
        var top = bottom.addingReportingOverflow(perPage).overflow ? Int.max : bottom + perPage
        if top >= count - orphans { top = count }
        return bottom..<max(bottom, top)
    }

    /// Django's `get_elided_page_range`.
    static func elided(number: Int, numPages: Int, onEachSide: Int, onEnds: Int) -> [PageRangeItem] {
        // Wider than the page count changes nothing, and keeps the sums below from overflowing.
        let onEachSide = min(onEachSide, numPages), onEnds = min(onEnds, numPages)
        if numPages <= (onEachSide + onEnds) * 2 { return (1..<(numPages + 1)).map(PageRangeItem.page) }
        var items: [PageRangeItem] = []
        if number > (1 + onEachSide + onEnds) + 1 {
            items += (1..<(onEnds + 1)).map(PageRangeItem.page)
            items.append(.ellipsis)
            items += ((number - onEachSide)..<(number + 1)).map(PageRangeItem.page)
        } else {
            items += (1..<(number + 1)).map(PageRangeItem.page)
        }
        if number < (numPages - onEachSide - onEnds) - 1 {
            items += ((number + 1)..<(number + onEachSide + 1)).map(PageRangeItem.page)
            items.append(.ellipsis)
            items += ((numPages - onEnds + 1)..<(numPages + 1)).map(PageRangeItem.page)
        } else {
            items += ((number + 1)..<(numPages + 1)).map(PageRangeItem.page)
        }
        return items
    }
}

/// An entry of an elided page range: a page number, or the `…` between runs.
public enum PageRangeItem: Sendable, Equatable, CustomStringConvertible {
    case page(Int)
    case ellipsis

    public var description: String {
        switch self {
        case .page(let number): String(number)
        case .ellipsis: "…"
        }
    }
}
