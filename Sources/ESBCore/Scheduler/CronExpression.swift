import Foundation

/// A five-field cron expression read as Vixie cron reads it: `minute hour day-of-month month
/// day-of-week`, each field `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
/// `a,b`, month and weekday names (`jan`, `mon-fri`; 0 and 7 are Sunday), and the macros
/// `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`.
///
/// When both day fields are restricted a day matches either (`0 0 1 * mon`: the 1st and
/// every Monday); when either starts with `*`, both must match. Matching works on wall-clock
/// minutes (``CivilMinute``); ``ZonedCron`` turns them into instants in a time zone.
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    /// One field's allowed values as bits.
    struct Field: Sendable, Equatable {
        var bits: UInt64
        /// Written starting with `*` (Vixie's `*_STAR` flags).
        var star: Bool
        func contains(_ value: Int) -> Bool { bits & (1 << UInt64(value)) != 0 }
    }

    var minute: Field, hour: Field, dayOfMonth: Field, month: Field, dayOfWeek: Field
    public let description: String

    /// A job whose minute or hour is a wildcard runs in real time across DST changes; one at
    /// fixed times runs once when its local time repeats and at the end of a gap when it
    /// does not exist (Vixie cron's rule).
    public var isWildcard: Bool { minute.star || hour.star }

    /// A syntax or range problem, naming the cron field.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var field: String
        public var reason: String
        public var description: String { field.isEmpty ? reason : "\(field) field \(reason)" }
    }

    static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(_ text: String) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.utf8.count <= 1000 else { throw ParseError(field: "", reason: "is longer than 1000 characters") }
        var source = trimmed
        if trimmed.hasPrefix("@") {
            guard let expanded = Self.macros[trimmed.lowercased()] else {
                throw ParseError(field: "", reason: "'\(trimmed)' is not a known macro (@yearly @annually @monthly @weekly @daily @midnight @hourly)")
            }
            source = expanded
        }
        let parts = source.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard parts.count == 5 else {
            throw ParseError(field: "", reason: "must have 5 fields (minute hour day-of-month month day-of-week), not \(parts.count)")
        }
        minute = try Self.field(parts[0], name: "minute", range: 0...59, names: [])
        hour = try Self.field(parts[1], name: "hour", range: 0...23, names: [])
        dayOfMonth = try Self.field(parts[2], name: "day-of-month", range: 1...31, names: [])
        month = try Self.field(parts[3], name: "month", range: 1...12, names: Self.monthNames, firstName: 1)
        var weekdays = try Self.field(parts[4], name: "day-of-week", range: 0...7, names: Self.dayNames)
        if weekdays.contains(7) { weekdays.bits = (weekdays.bits | 1) & ~(1 << 7) }
        dayOfWeek = weekdays
        description = trimmed
    }

    private static func field(_ text: String, name: String, range: ClosedRange<Int>, names: [String],
                              firstName: Int = 0) throws(ParseError) -> Field {
        func number(_ token: Substring) throws(ParseError) -> Int {
            if let value = Int(token), !token.hasPrefix("+"), !token.hasPrefix("-") {
                guard range.contains(value) else {
                    throw ParseError(field: name, reason: "'\(text)': \(value) is out of range \(range.lowerBound)-\(range.upperBound)")
                }
                return value
            }
            if let index = names.firstIndex(of: token.lowercased()) { return index + firstName }
            throw ParseError(field: name, reason: "'\(text)': '\(token)' is not a number\(names.isEmpty ? "" : " or a name")")
        }
        var bits: UInt64 = 0
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw ParseError(field: name, reason: "'\(text)' has an empty list item") }
            let pieces = item.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            var step = 1
            if pieces.count == 2 {
                guard let value = Int(pieces[1]), !pieces[1].hasPrefix("+"), value >= 1, value <= range.upperBound + 1 else {
                    throw ParseError(field: name, reason: "'\(text)': step '\(pieces[1])' must be a number from 1 to \(range.upperBound + 1)")
                }
                step = value
            }
            let span = pieces[0]
            let low: Int, high: Int
            if span == "*" {
                (low, high) = (range.lowerBound, range.upperBound)
            } else if let dash = span.firstIndex(of: "-") {
                low = try number(span[..<dash])
                high = try number(span[span.index(after: dash)...])
                guard low <= high else { throw ParseError(field: name, reason: "'\(text)': range \(span) runs backwards") }
            } else {
                low = try number(span)
                high = pieces.count == 2 ? range.upperBound : low
            }
            for value in stride(from: low, through: high, by: step) { bits |= 1 << UInt64(value) }
        }
        return Field(bits: bits, star: text.hasPrefix("*"))
    }

    /// Whether the expression matches a day (either day field when both are restricted).
    func matchesDay(_ day: Int, weekday: Int) -> Bool {
        if dayOfMonth.star || dayOfWeek.star { return dayOfMonth.contains(day) && dayOfWeek.contains(weekday) }
        return dayOfMonth.contains(day) || dayOfWeek.contains(weekday)
    }

    /// The first matching wall-clock minute at or after `start`; nil when none comes within
    /// ten years (`0 0 30 2 *` never matches).
    public func firstMatch(atOrAfter start: CivilMinute) -> CivilMinute? {
        var (year, month, day, hour, minute) = start.fields
        let lastYear = year + 10
        func nextDay() { day += 1; hour = 0; minute = 0 }
        while year <= lastYear {
            if month > 12 { month = 1; year += 1; day = 1; hour = 0; minute = 0; continue }
            if !self.month.contains(month) { month += 1; day = 1; hour = 0; minute = 0; continue }
            if day > CivilMinute.daysIn(month, of: year) { month += 1; day = 1; hour = 0; minute = 0; continue }
            if !matchesDay(day, weekday: CivilMinute.weekday(year, month, day)) { nextDay(); continue }
            if hour > 23 { nextDay(); continue }
            if !self.hour.contains(hour) { hour += 1; minute = 0; continue }
            if minute > 59 { hour += 1; minute = 0; continue }
            if !self.minute.contains(minute) { minute += 1; continue }
            return CivilMinute(year: year, month: month, day: day, hour: hour, minute: minute)
        }
        return nil
    }
}

/// A wall-clock minute in the proleptic Gregorian calendar, with no time zone: what a cron
/// field matches. Its ``index`` counts minutes from 1970-01-01 00:00.
public struct CivilMinute: Sendable, Equatable, Comparable, CustomStringConvertible {
    public let index: Int64

    public init(index: Int64) { self.index = index }

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int) {
        index = Self.daysFromCivil(year, month, day) * 1440 + Int64(hour * 60 + minute)
    }

    var fields: (year: Int, month: Int, day: Int, hour: Int, minute: Int) {
        let days = index >= 0 ? index / 1440 : (index - 1439) / 1440
        let minutes = Int(index - days * 1440)
        let (year, month, day) = Self.civilFromDays(days)
        return (year, month, day, minutes / 60, minutes % 60)
    }

    public var description: String {
        let f = fields
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(f.year)-\(two(f.month))-\(two(f.day)) \(two(f.hour)):\(two(f.minute))"
    }

    public static func < (a: Self, b: Self) -> Bool { a.index < b.index }

    /// Howard Hinnant's days-from-civil.
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (Int(yoe + era * 400 + (month <= 2 ? 1 : 0)), Int(month), Int(day))
    }

    static func daysIn(_ month: Int, of year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// 0 = Sunday.
    static func weekday(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let days = daysFromCivil(year, month, day)
        return Int(((days % 7) + 7 + 4) % 7)
    }
}
