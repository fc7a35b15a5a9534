import Foundation

/// A cron expression in a time zone: the instants (milliseconds since 1970, UTC) it fires at,
/// following DST changes as Vixie cron does. A job at fixed local times runs once when its
/// time repeats (the first time) and at the end of a gap when its time does not exist; a
/// job whose minute or hour is a wildcard follows real time (an hourly job runs in both
/// passes of a repeated hour and not in a gap).
public struct ZonedCron: Sendable {
    public let expression: CronExpression
    public let zone: TimeZone

    public init(_ expression: CronExpression, zone: TimeZone) {
        self.expression = expression
        self.zone = zone
    }

    /// The zone's offset from UTC at `instant`, in milliseconds.
    func offset(_ instant: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(instant) / 1000))) * 1000
    }

    /// The first instant after `after` at which the expression fires; nil when it never does.
    public func next(after: Int64) -> Int64? {
        expression.isWildcard ? nextInRealTime(after: after) : nextAtFixedTime(after: after)
    }

    /// Walks spans of constant offset: in each, wall-clock minutes map one to one onto instants.
    private func nextInRealTime(after: Int64) -> Int64? {
        var from = after + 1
        for _ in 0..<64 {
            let offset = offset(from)
            let first = CivilMinute(index: Self.ceilDiv(from + offset, 60_000))
            guard let match = expression.firstMatch(atOrAfter: first) else { return nil }
            let instant = match.index * 60_000 - offset
            if let change = firstChange(from: from, to: instant, offset: offset) {
                from = change
                continue
            }
            return instant
        }
        return nil
    }

    /// Walks wall-clock minutes after the local time of `after`, each resolved to its first
    /// occurrence (or the end of its gap).
    private func nextAtFixedTime(after: Int64) -> Int64? {
        var first = CivilMinute(index: Self.floorDiv(after + offset(after), 60_000) + 1)
        for _ in 0..<64 {
            guard let match = expression.firstMatch(atOrAfter: first) else { return nil }
            let instant = resolve(match)
            if instant > after { return instant }
            first = CivilMinute(index: match.index + 1)
        }
        return nil
    }

    /// The instant a wall-clock minute first occurs at, or the end of the gap it falls in.
    func resolve(_ minute: CivilMinute) -> Int64 {
        let naive = minute.index * 60_000
        let offsets = Set([offset(naive - 86_400_000), offset(naive), offset(naive + 86_400_000)])
        let valid = offsets.filter { offset(naive - $0) == $0 }.map { naive - $0 }
        if let earliest = valid.min() { return earliest }
        // In a gap: the clock jumped over it; the job runs when the jump happened.
        let before = naive - offsets.max()!, after = naive - offsets.min()!
        return firstChange(from: before, to: after, offset: offset(before)) ?? after
    }

    /// The first instant in `from...to` whose offset differs from `offset`, to the second.
    func firstChange(from: Int64, to: Int64, offset expected: Int64) -> Int64? {
        guard to > from else { return nil }
        let step: Int64 = 6 * 3_600_000
        var low = from, high = from
        while true {
            high = min(low + step, to)
            if offset(high) != expected { break }
            if high == to { return nil }
            low = high
        }
        // offset(low) == expected, offset(high) != expected.
        while high - low > 1000 {
            let middle = low + (high - low) / 2
            if offset(middle) == expected { low = middle } else { high = middle }
        }
        // Offsets change on whole seconds: the first one after `low` is the change.
        return Self.ceilDiv(low + 1, 1000) * 1000
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
    static func ceilDiv(_ a: Int64, _ b: Int64) -> Int64 { -floorDiv(-a, b) }
}
