import Foundation

/// A `scheduler` object read for running: when it runs and what it hands its service. The
/// schedule arithmetic is pure (times are milliseconds since 1970, UTC, passed in), so tests
/// drive it with their own clock.
public struct JobDefinition: Sendable {
    public enum Schedule: Sendable {
        case oneTime(start: Int64)
        /// `start` nil: from when the job was created (its anchor).
        case interval(start: Int64?, every: Int64, repeats: Int?)
        case cron(ZonedCron)
    }

    public enum Misfire: String, Sendable { case runOnce = "run_once", skip }

    /// A field that makes the definition unusable, and why.
    public struct Problem: Error, Sendable, Equatable {
        public var field: String
        public var reason: String
    }

    public let name: String
    public let service: String
    public let isActive: Bool
    public let schedule: Schedule
    public let extra: String
    public let misfire: Misfire
    /// 0: no limit.
    public let maxRunSeconds: Int
    /// The fields that decide when the job runs, as text: a change restarts its schedule.
    /// Pausing and resuming (`is_active`) does not: the runs done (for `repeats`) stay.
    public let scheduleKey: String

    /// How late a run may start and still count as on time: later than this, `misfire` decides.
    public static let misfireGrace: Int64 = 5000

    public init(_ fields: ObjectFields) throws(Problem) {
        name = fields["name"]?.string ?? ""
        service = fields["service"]?.string ?? ""
        isActive = fields["is_active"]?.bool ?? true
        extra = fields["extra"]?.string ?? ""
        misfire = Misfire(rawValue: fields["misfire"]?.string ?? "run_once") ?? .runOnce
        maxRunSeconds = fields["max_run_seconds"]?.int ?? 0
        let startText = fields["start_date"]?.string
        var start: Int64?
        if let startText {
            guard let parsed = Self.parseDate(startText) else {
                throw Problem(field: "start_date", reason: "= '\(startText)' is not an ISO 8601 date and time (2025-01-31T08:00:00+01:00; no offset means UTC)")
            }
            start = parsed
        }
        let zoneName = fields["timezone"]?.string ?? "UTC"
        switch fields["job_type"]?.string ?? "" {
        case "one_time":
            guard let start else { throw Problem(field: "start_date", reason: "is required for a one_time job (when it runs)") }
            schedule = .oneTime(start: start)
        case "interval_based":
            let units: [(String, Int64)] = [("weeks", 604_800), ("days", 86_400), ("hours", 3_600), ("minutes", 60), ("seconds", 1)]
            var seconds: Int64 = 0
            for (unit, size) in units {
                let (part, overflow) = Int64(fields[unit]?.int ?? 0).multipliedReportingOverflow(by: size)
                let (sum, overflowed) = seconds.addingReportingOverflow(part)
                guard !overflow, !overflowed, sum <= 1_000_000_000_000 else {
                    throw Problem(field: unit, reason: "makes the interval longer than 10^12 seconds")
                }
                seconds = sum
            }
            guard seconds > 0 else {
                throw Problem(field: "seconds", reason: "is missing: an interval_based job needs an interval (weeks, days, hours, minutes or seconds)")
            }
            schedule = .interval(start: start, every: seconds * 1000, repeats: fields["repeats"]?.int)
        case "cron_style":
            guard let text = fields["cron_definition"]?.string, !text.isEmpty else {
                throw Problem(field: "cron_definition", reason: "is required for a cron_style job")
            }
            let expression: CronExpression
            do {
                expression = try CronExpression(text)
            } catch {
                throw Problem(field: "cron_definition", reason: "= '\(text)': \(error)")
            }
            guard let zone = TimeZone(identifier: zoneName) else {
                throw Problem(field: "timezone", reason: "= '\(zoneName)' is not a known IANA time zone")
            }
            let cron = ZonedCron(expression, zone: zone)
            guard cron.next(after: Self.now()) != nil else {
                throw Problem(field: "cron_definition", reason: "= '\(text)' never matches a date")
            }
            schedule = .cron(cron)
        case let other:
            throw Problem(field: "job_type", reason: "= '\(other)' must be one of one_time|interval_based|cron_style")
        }
        let keyFields = ["job_type", "start_date", "weeks", "days", "hours", "minutes", "seconds", "repeats", "cron_definition",
                         "timezone"]
        scheduleKey = keyFields.map { "\($0)=\(fields[$0].map { "\($0)" } ?? "null")" }.joined(separator: ";")
    }

    /// When a job created or changed at `now` runs first, or a paused one resumed at `now`
    /// after `runsDone` runs: the first `start_date + k × interval` that is not in the past,
    /// the one-time start if it is not past (by more than ``misfireGrace``) and the job has
    /// not run, the first cron time after `now`; nil for a paused job or one with nothing left
    /// to run. `anchor` is when the schedule started: the origin of an interval job without
    /// `start_date`.
    public func firstRun(now: Int64, anchor: Int64, runsDone: Int = 0) -> Int64? {
        guard isActive else { return nil }
        switch schedule {
        case .oneTime(let start):
            return runsDone == 0 && start >= now - Self.misfireGrace ? start : nil
        case .interval(let start, let every, let repeats):
            if let repeats, runsDone >= repeats { return nil }
            let origin = start ?? anchor
            guard now > origin else { return origin }
            return origin + ZonedCron.ceilDiv(now - origin, every) * every
        case .cron(let cron):
            return cron.next(after: now - 1)
        }
    }

    /// The run after one due at `due` that is starting (or being skipped) at `now`: never a
    /// time already past, so a server that was down catches up with one run, not a burst.
    /// `runsDone` counts the runs started so far, this one included.
    public func nextRun(due: Int64, now: Int64, anchor: Int64, runsDone: Int) -> Int64? {
        guard isActive else { return nil }
        let after = max(due, now)
        switch schedule {
        case .oneTime:
            return nil
        case .interval(let start, let every, let repeats):
            if let repeats, runsDone >= repeats { return nil }
            let origin = start ?? anchor
            guard after >= origin else { return origin }
            return origin + (ZonedCron.floorDiv(after - origin, every) + 1) * every
        case .cron(let cron):
            return cron.next(after: after)
        }
    }

    public static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    // MARK: Dates

    /// Reads `2025-01-31T08:00:00+01:00`, with a space for the `T` (Zato writes
    /// `2025-01-31 08:00:00`), optional seconds and fraction, and `Z`, `±HH:MM`, `±HHMM` or
    /// `±HH`; no offset means UTC. A date alone is its midnight, UTC.
    public static func parseDate(_ text: String) -> Int64? {
        let bytes = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        guard bytes.count <= 40 else { return nil }
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[index..<index + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int(byte - 48)
            }
            index += count
            return value
        }
        func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), take(45), let month = digits(2), take(45), let day = digits(2),
              (1...12).contains(month), (1...CivilMinute.daysIn(month, of: year)).contains(day) else { return nil }
        var hour = 0, minute = 0, second = 0, millis = 0, offset = 0
        if index < bytes.count {
            guard take(84) || take(116) || take(32), let h = digits(2), take(58), let m = digits(2), h < 24, m < 60 else { return nil }
            (hour, minute) = (h, m)
            if take(58) {
                guard let s = digits(2), s < 60 else { return nil }
                second = s
                if take(46) || take(44) {
                    var scale = 100, any = false
                    while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                        millis += Int(bytes[index] - 48) * scale
                        scale /= 10
                        index += 1
                        any = true
                    }
                    guard any else { return nil }
                }
            }
            if take(90) || take(122) {
                offset = 0
            } else if index < bytes.count {
                let sign: Int
                if take(43) { sign = 1 } else if take(45) { sign = -1 } else { return nil }
                guard let oh = digits(2), oh <= 14 else { return nil }
                var om = 0
                if index < bytes.count {
                    _ = take(58)
                    guard let value = digits(2), value < 60 else { return nil }
                    om = value
                }
                offset = sign * (oh * 3600 + om * 60)
            }
        }
        guard index == bytes.count else { return nil }
        let minutes = CivilMinute(year: year, month: month, day: day, hour: hour, minute: minute).index
        return (minutes * 60 + Int64(second) - Int64(offset)) * 1000 + Int64(millis)
    }

    /// `2025-01-31T07:00:00.000Z`.
    public static func formatDate(_ instant: Int64) -> String {
        let minute = CivilMinute(index: ZonedCron.floorDiv(instant, 60_000))
        let rest = instant - minute.index * 60_000
        let f = minute.fields
        func pad(_ n: Int, _ width: Int) -> String { String(repeating: "0", count: max(0, width - String(n).count)) + String(n) }
        return "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2))T\(pad(f.hour, 2)):\(pad(f.minute, 2)):"
            + "\(pad(Int(rest / 1000), 2)).\(pad(Int(rest % 1000), 3))Z"
    }
}
