@testable import ESBCore
import Foundation
import Testing

/// The scheduler's arithmetic with a test clock: cron parsing, cron times in time zones
/// across DST changes (Vixie cron's rules), intervals, one-time jobs and misfires.
@Suite struct SchedulerScheduleTests {
    static func at(_ text: String) -> Int64 { JobDefinition.parseDate(text)! }
    static func iso(_ instant: Int64?) -> String { instant.map(JobDefinition.formatDate) ?? "nil" }

    // MARK: Cron syntax

    @Test(arguments: [
        ("61 * * * *", "minute field '61': 61 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("* * * *", "must have 5 fields (minute hour day-of-month month day-of-week), not 4"),
        ("@reboot", "'@reboot' is not a known macro (@yearly @annually @monthly @weekly @daily @midnight @hourly)"),
        ("5-1 * * * *", "minute field '5-1': range 5-1 runs backwards"),
        ("*/0 * * * *", "minute field '*/0': step '0' must be a number from 1 to 60"),
        ("* * * foo *", "month field 'foo': 'foo' is not a number or a name"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("-1 * * * *", "minute field '-1': '' is not a number"),
    ])
    func cronRefusesWithTheField(text: String, message: String) {
        #expect(throws: CronExpression.ParseError.self) { try CronExpression(text) }
        do {
            _ = try CronExpression(text)
        } catch {
            #expect("\(error)" == message)
        }
    }

    /// (expression, zone, after, expected next runs in order)
    static let cronCases: [(String, String, String, [String])] = [
        // Steps, ranges, lists, names, macros (2026-01-01 is a Thursday).
        ("*/5 * * * *", "UTC", "2026-01-01T00:02:30Z", ["2026-01-01T00:05:00.000Z", "2026-01-01T00:10:00.000Z"]),
        ("30 9 * * 1-5", "UTC", "2026-01-02T10:00:00Z", ["2026-01-05T09:30:00.000Z", "2026-01-06T09:30:00.000Z"]),
        ("0 8 * jan,jul sun", "UTC", "2026-01-01T00:00:00Z", ["2026-01-04T08:00:00.000Z", "2026-01-11T08:00:00.000Z"]),
        ("0 8 * * 7", "UTC", "2026-01-01T00:00:00Z", ["2026-01-04T08:00:00.000Z"]),
        ("0 0 */10 * *", "UTC", "2026-01-01T00:00:00Z", ["2026-01-11T00:00:00.000Z", "2026-01-21T00:00:00.000Z", "2026-01-31T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]),
        ("0 12 29 2 *", "UTC", "2026-03-01T00:00:00Z", ["2028-02-29T12:00:00.000Z", "2032-02-29T12:00:00.000Z"]),
        ("@yearly", "UTC", "2026-03-01T00:00:00Z", ["2027-01-01T00:00:00.000Z"]),
        ("@hourly", "UTC", "2026-03-01T00:00:00Z", ["2026-03-01T01:00:00.000Z"]),
        ("@weekly", "UTC", "2026-01-01T00:00:00Z", ["2026-01-04T00:00:00.000Z"]),
        // Both day fields restricted: either matches (the 1st and every Monday).
        ("0 0 1 * mon", "UTC", "2026-01-01T00:00:00Z", ["2026-01-05T00:00:00.000Z", "2026-01-12T00:00:00.000Z", "2026-01-19T00:00:00.000Z", "2026-01-26T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]),
        // Day-of-month restricted, weekday starred: both must match.
        ("0 0 13 * *", "UTC", "2026-01-01T00:00:00Z", ["2026-01-13T00:00:00.000Z"]),
        // A time zone without DST changes on the way.
        ("0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00:00Z", ["2026-01-02T00:00:00.000Z"]),

        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        // A fixed time in the gap runs at its end, once; the next day as usual.
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", ["2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]),
        // Wildcard hours follow real time: no 02:00 that day.
        ("0 * * * *", "Europe/Berlin", "2026-03-29T00:30:00Z", ["2026-03-29T01:00:00.000Z", "2026-03-29T02:00:00.000Z"]),
        ("*/30 2 * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", ["2026-03-30T00:00:00.000Z"]),
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:xx repeats.
        // A fixed time that repeats runs once, the first time.
        ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", ["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]),
        // Wildcard hours run in both passes of the repeated hour.
        ("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", ["2026-10-25T00:00:00.000Z", "2026-10-25T01:00:00.000Z", "2026-10-25T02:00:00.000Z"]),

        // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", ["2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]),
        ("15 * * * *", "America/New_York", "2026-03-08T06:30:00Z", ["2026-03-08T07:15:00.000Z", "2026-03-08T08:15:00.000Z"]),
        // America/New_York, 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:xx repeats.
        ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]),
        ("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", ["2026-11-01T05:00:00.000Z", "2026-11-01T06:00:00.000Z", "2026-11-01T07:00:00.000Z"]),
        // A daily job keeps its local time on both sides of the change.
        ("0 9 * * *", "America/New_York", "2026-03-07T15:00:00Z", ["2026-03-08T13:00:00.000Z", "2026-03-09T13:00:00.000Z"]),
    ]

    @Test(arguments: cronCases.indices)
    func cronTimesFollowTheZoneAsVixieCronDoes(index: Int) throws {
        let (text, zone, after, expected) = Self.cronCases[index]
        let cron = ZonedCron(try CronExpression(text), zone: try #require(TimeZone(identifier: zone)))
        var from = Self.at(after)
        var got: [String] = []
        for _ in expected {
            let next = cron.next(after: from)
            got.append(Self.iso(next))
            guard let next else { break }
            from = next
        }
        #expect(got == expected, "\(text) in \(zone) after \(after)")
    }

    // MARK: Dates

    @Test func datesReadAsZatoAndISO8601WriteThem() {
        #expect(Self.iso(JobDefinition.parseDate("2025-01-11 11:23:52")) == "2025-01-11T11:23:52.000Z", "no offset is UTC")
        #expect(Self.iso(JobDefinition.parseDate("2025-01-31T08:00:00+01:00")) == "2025-01-31T07:00:00.000Z")
        #expect(Self.iso(JobDefinition.parseDate("2025-01-31T08:00:00-0530")) == "2025-01-31T13:30:00.000Z")
        #expect(Self.iso(JobDefinition.parseDate("2025-01-31T08:00:00.25Z")) == "2025-01-31T08:00:00.250Z")
        #expect(Self.iso(JobDefinition.parseDate("2025-01-31T08:00")) == "2025-01-31T08:00:00.000Z")
        #expect(Self.iso(JobDefinition.parseDate("2025-01-31")) == "2025-01-31T00:00:00.000Z")
        for bad in ["2025-02-30 00:00:00", "2025-13-01", "yesterday", "2025-01-31T25:00:00", "2025-01-31T08:00:00+1", "", "2025-01-31T08:00:00Zjunk"] {
            #expect(JobDefinition.parseDate(bad) == nil, "\(bad)")
        }
    }

    // MARK: Definitions

    func job(_ fields: ObjectFields) throws(JobDefinition.Problem) -> JobDefinition {
        try JobDefinition(["name": .string("j"), "service": .string("s")].merging(fields) { $1 })
    }

    @Test func badDefinitionsNameTheField() {
        func problem(_ fields: ObjectFields) -> String? {
            do throws(JobDefinition.Problem) {
                _ = try job(fields)
                return nil
            } catch {
                return error.field
            }
        }
        #expect(problem(["job_type": .string("interval_based")]) == "seconds", "no interval")
        #expect(problem(["job_type": .string("interval_based"), "seconds": .int(0)]) == "seconds")
        #expect(problem(["job_type": .string("one_time")]) == "start_date")
        #expect(problem(["job_type": .string("cron_style")]) == "cron_definition")
        #expect(problem(["job_type": .string("cron_style"), "cron_definition": .string("61 * * * *")]) == "cron_definition")
        #expect(problem(["job_type": .string("cron_style"), "cron_definition": .string("0 0 30 2 *")]) == "cron_definition", "never matches")
        #expect(problem(["job_type": .string("cron_style"), "cron_definition": .string("* * * * *"), "timezone": .string("Mars/Olympus")]) == "timezone")
        #expect(problem(["job_type": .string("weekly")]) == "job_type")
        #expect(problem(["job_type": .string("interval_based"), "minutes": .int(1), "start_date": .string("soon")]) == "start_date")
        #expect(problem(["job_type": .string("interval_based"), "weeks": .int(1), "days": .int(1), "hours": .int(1)]) == nil)
    }

    @Test func intervalJobsRunOnTheirGridAndNeverCatchUpWithABurst() throws {
        let start = Self.at("2026-01-01T00:00:00Z")
        let every10 = try job(["job_type": .string("interval_based"), "seconds": .int(10), "start_date": .string("2026-01-01T00:00:00Z")])
        // The first start + k × interval not in the past.
        #expect(every10.firstRun(now: start + 25_000, anchor: 0) == start + 30_000)
        #expect(every10.firstRun(now: start - 5_000, anchor: 0) == start, "a future start is the first run")
        #expect(every10.firstRun(now: start + 30_000, anchor: 0) == start + 30_000)
        // On time: the next grid point; after downtime: the next one after now, once.
        #expect(every10.nextRun(due: start + 30_000, now: start + 30_005, anchor: 0, runsDone: 1) == start + 40_000)
        #expect(every10.nextRun(due: start + 30_000, now: start + 95_000, anchor: 0, runsDone: 1) == start + 100_000)
        // Without start_date, from when the job was created (its anchor): it runs at once.
        let anchored = try job(["job_type": .string("interval_based"), "minutes": .int(1)])
        #expect(anchored.firstRun(now: start, anchor: start) == start)
        #expect(anchored.nextRun(due: start, now: start + 3, anchor: start, runsDone: 1) == start + 60_000)
        // repeats: runs in all.
        let twice = try job(["job_type": .string("interval_based"), "seconds": .int(1), "repeats": .int(2),
                             "start_date": .string("2026-01-01T00:00:00Z")])
        #expect(twice.nextRun(due: start, now: start, anchor: 0, runsDone: 1) == start + 1000)
        #expect(twice.nextRun(due: start + 1000, now: start + 1000, anchor: 0, runsDone: 2) == nil)
        // Weeks … seconds add up.
        let mixed = try job(["job_type": .string("interval_based"), "weeks": .int(1), "days": .int(1), "hours": .int(1),
                             "minutes": .int(1), "seconds": .int(1), "start_date": .string("2026-01-01T00:00:00Z")])
        #expect(mixed.nextRun(due: start, now: start, anchor: 0, runsDone: 1) == start + (604_800 + 86_400 + 3_600 + 61) * 1000)
        // A paused job has no next run.
        let paused = try job(["job_type": .string("interval_based"), "seconds": .int(1), "is_active": .bool(false)])
        #expect(paused.firstRun(now: start, anchor: start) == nil)
    }

    @Test func oneTimeJobsRunOnceAtTheirStartIfItIsNotPast() throws {
        let start = Self.at("2026-06-15T08:00:00Z")
        let once = try job(["job_type": .string("one_time"), "start_date": .string("2026-06-15 08:00:00")])
        #expect(once.firstRun(now: start - 60_000, anchor: 0) == start)
        #expect(once.firstRun(now: start + 60_000, anchor: 0) == nil, "a start in the past is not run")
        #expect(once.nextRun(due: start, now: start, anchor: 0, runsDone: 1) == nil)
    }

    // MARK: Claims

    func state(_ job: String, due: Int64, running: String? = nil, server: String? = nil, alive: Bool = true) -> JobState {
        JobState(job: job, scheduleKey: "", anchor: 0, nextRunAt: due, runsDone: 0, runningCID: running, runningServer: server,
                 runningSince: running == nil ? nil : due - 1000, runnerAlive: alive)
    }

    func definitions(_ misfire: String = "run_once") throws -> (JobDefinition, [String: JobDefinition]) {
        let definition = try job(["job_type": .string("interval_based"), "seconds": .int(1), "misfire": .string(misfire),
                                  "start_date": .string("2026-01-01T00:00:00Z")])
        return (definition, ["j": definition])
    }

    func keyed(_ state: JobState, _ definition: JobDefinition) -> JobState {
        var state = state
        state.scheduleKey = definition.scheduleKey
        return state
    }

    @Test func aRunDueAfterDowntimeRunsOnceOrIsSkippedByMisfire() throws {
        let now = Self.at("2026-01-01T01:00:00.200Z"), due = Self.at("2026-01-01T00:00:00Z")
        let (runOnce, definitions) = try definitions()
        let caughtUp = try #require(Scheduler.plan([keyed(state("j", due: due), runOnce)], definitions: definitions, now: now, server: "a", busy: { _ in false }).first)
        #expect(caughtUp.start?.scheduledAt == due)
        #expect(caughtUp.start?.startedAt == now)
        #expect(caughtUp.nextRunAt == Self.at("2026-01-01T01:00:01Z"), "the next time after now: one catch-up run, no burst")
        let (skip, skipping) = try self.definitions("skip")
        let skipped = try #require(Scheduler.plan([keyed(state("j", due: due), skip)], definitions: skipping, now: now, server: "a", busy: { _ in false }).first)
        #expect(skipped.start == nil)
        #expect(skipped.record?.status == .skipped)
        #expect(skipped.nextRunAt == Self.at("2026-01-01T01:00:01Z"))
        // On time (within the grace), skip still runs.
        let onTime = try #require(Scheduler.plan([keyed(state("j", due: now - 100), skip)], definitions: skipping, now: now, server: "a", busy: { _ in false }).first)
        #expect(onTime.start != nil)
    }

    @Test func runsOfOneJobNeverOverlapAndADeadRunnerDoesNotBlock() throws {
        let now = Self.at("2026-01-01T00:00:10Z")
        let (definition, definitions) = try definitions()
        // Going on another live server, or here: skipped.
        let elsewhere = try #require(Scheduler.plan([keyed(state("j", due: now, running: "c1", server: "b"), definition)],
                                         definitions: definitions, now: now, server: "a", busy: { _ in false }).first)
        #expect(elsewhere.record?.status == .skipped && elsewhere.start == nil)
        #expect(elsewhere.record?.error?.contains("c1") == true)
        let here = try #require(Scheduler.plan([keyed(state("j", due: now, running: "c1", server: "a"), definition)],
                                    definitions: definitions, now: now, server: "a", busy: { $0 == "c1" }).first)
        #expect(here.record?.status == .skipped)
        // Its server died (or this server's run is gone): interrupted, and this run starts.
        let dead = try #require(Scheduler.plan([keyed(state("j", due: now, running: "c1", server: "b", alive: false), definition)],
                                    definitions: definitions, now: now, server: "a", busy: { _ in false }).first)
        #expect(dead.interrupted == "c1" && dead.start != nil)
        let stale = try #require(Scheduler.plan([keyed(state("j", due: now, running: "c1", server: "a"), definition)],
                                     definitions: definitions, now: now, server: "a", busy: { _ in false }).first)
        #expect(stale.interrupted == "c1" && stale.start != nil)
        // This server's own run with its task going is busy even if its heartbeat went stale.
        let ownStale = try #require(Scheduler.plan([keyed(state("j", due: now, running: "c1", server: "a", alive: false), definition)],
                                                   definitions: definitions, now: now, server: "a", busy: { $0 == "c1" }).first)
        #expect(ownStale.record?.status == .skipped && ownStale.start == nil && ownStale.interrupted == nil)
        // A job paused or resumed since this server loaded it: left to the next reload.
        var paused = keyed(state("j", due: now), definition)
        paused.active = false
        #expect(Scheduler.plan([paused], definitions: definitions, now: now, server: "a", busy: { _ in false }).isEmpty)
        // A definition this server has not loaded yet (another key): left alone.
        #expect(Scheduler.plan([state("j", due: now)], definitions: definitions, now: now, server: "a", busy: { _ in false }).isEmpty)
    }
}
