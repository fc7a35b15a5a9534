import ESBStore

/// One run of a job, as `GET /esb/api/scheduler/{name}/runs` shows it.
public struct JobRun: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable {
        case running, ok, failed, skipped
        case timedOut = "timed_out"
        case interrupted
    }

    public var job: String
    public var cid: String
    public var scheduledAt: Int64
    public var startedAt: Int64
    public var finishedAt: Int64?
    public var durationMS: Int64?
    public var status: Status
    public var error: String?
    public var server: String

    enum Keys: String, CodingKey {
        case job, cid, scheduled_at, started_at, finished_at, duration_ms, status, error, server
    }

    /// The `scheduler_run` columns of a run, in ``Keys``'s order, for both engines' SQL.
    static let columns = "job, cid, scheduled_at, started_at, finished_at, duration_ms, status, error, server"
    /// Why a run going at a server's stop has no end, as its record says.
    static let stoppedMidRun = "the server stopped mid-run (a crash, a kill or a shutdown that did not wait for it)"
}

/// As the API shows a run: times in ISO 8601 (UTC), absent values null.
extension JobRun: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(job, forKey: .job)
        try container.encode(cid, forKey: .cid)
        try container.encode(JobDefinition.formatDate(scheduledAt), forKey: .scheduled_at)
        try container.encode(JobDefinition.formatDate(startedAt), forKey: .started_at)
        try container.encode(finishedAt.map(JobDefinition.formatDate), forKey: .finished_at)
        try container.encode(durationMS, forKey: .duration_ms)
        try container.encode(status.rawValue, forKey: .status)
        try container.encode(error, forKey: .error)
        try container.encode(server, forKey: .server)
    }
}

/// A job's schedule state in the ODB, next to its definition.
struct JobState: Sendable, Equatable {
    var job: String
    /// ``JobDefinition/scheduleKey`` the state was computed for.
    var scheduleKey: String
    /// Whether the job was active (not paused) when the state was written.
    var active: Bool = true
    /// When the schedule was (re)started: the origin of an interval job without `start_date`.
    var anchor: Int64
    var nextRunAt: Int64?
    /// Runs started since the schedule was (re)started (for `repeats`).
    var runsDone: Int
    var runningCID: String?
    var runningServer: String?
    var runningSince: Int64?
    /// Whether the server running `runningCID` is alive (false: it stopped or went silent
    /// past the lease, so the run was cut short). Read with the state; not stored.
    var runnerAlive: Bool = true
}

/// A change of a job's state a reload asks for, made only if the reloading server read the
/// job as it is stored now (`body`): a server with an older copy changes nothing.
struct JobSync: Sendable {
    enum Change: Sendable {
        /// A new job, or its schedule changed: a new anchor and first run, no runs done.
        case reset
        /// Paused or resumed: the next run time changes, the runs done stay.
        case toggle
        /// An active job left without a next run time that has one: it gets it back.
        case revive
    }

    var change: Change
    var state: JobState
    /// The job's stored body (``StoredObject/body``) the change was computed from.
    var body: String
}

/// What the scheduler decided for one due job, written in the claim's transaction.
struct ClaimOutcome: Sendable {
    var job: String
    var nextRunAt: Int64?
    var runsDone: Int
    /// A run that starts now: the job's running run (on PostgreSQL also stored `running`;
    /// on SQLite its record is written when it ended).
    var start: JobRun?
    /// A run recorded as it is (`skipped`, or a `failed` one that never started).
    var record: JobRun?
    /// The cid of a run cut short by its server's death, recorded `interrupted`.
    var interrupted: String?
}

/// What ``Scheduler`` needs from the ODB, whatever the engine: the `scheduler_state` and
/// `scheduler_run` tables. On a shared ODB a due run is claimed by one server: the claim
/// locks the job's state row (`FOR UPDATE SKIP LOCKED`) and moves its next run time on in
/// the same transaction, so no other server sees it due again.
protocol SchedulerRecords: Sendable {
    /// Applies a reload's changes (one reload at a time in the cluster), keeping a run in
    /// progress; deletes the state and runs of jobs whose object is gone.
    func sync(_ changes: [JobSync]) async throws
    /// The earliest next run time among `jobs` (nil: all jobs).
    func nextDue(jobs: [String]?) async throws -> Int64?
    /// Stores `ends` (runs that ended, their jobs freed), then locks up to `limit` due states
    /// (of `jobs`, or of `orphans` once `foreignAfter` ms overdue), asks `plan` what to do
    /// with them, and writes its outcomes, all in one transaction; returns the outcomes.
    func claim(now: Int64, jobs: [String]?, orphans: [String], foreignAfter: Int64, limit: Int, ends: [JobRun],
               _ plan: @escaping @Sendable ([JobState]) -> [ClaimOutcome]) async throws -> [ClaimOutcome]
    /// Starts a run now if the job runs nothing: no run, a run of a dead server, or a run of
    /// this server that none of its tasks runs (`busy`, asked once the job's row is locked,
    /// says which do); false if busy.
    func startManual(_ run: JobRun, busy: @escaping @Sendable (String) -> Bool) async throws -> Bool
    /// This server's runs going, as the ODB has them (on SQLite every one), as (job, cid).
    func runningHere() async throws -> [(job: String, cid: String)]
    /// The services deployed on the other live servers of the cluster (none on SQLite).
    func servicesDeployedElsewhere() async throws -> Set<String>
    /// Stores runs' ends and, with `release`, frees their jobs for their next runs (a
    /// timed-out run whose service has not returned yet keeps the job until it does).
    func finish(_ runs: [JobRun], release: Bool) async throws
    /// Frees the job of a run whose call returned after it was recorded (recording it
    /// `interrupted` if that record was never written).
    func release(job: String, cid: String) async throws
    /// Records this server's runs from its previous life as `interrupted` (on SQLite every
    /// running run: one server per file); returns how many.
    func recover(now: Int64) async throws -> Int
    /// Records runs of servers that stopped or went silent past `leaseMS` as `interrupted`.
    func takeOver(now: Int64, leaseMS: Int64) async throws -> Int
    func states() async throws -> [String: JobState]
    /// Each job's newest run (by start time), a run going included.
    func lastRuns() async throws -> [String: JobRun]
    /// A job's runs, newest start first, a run going included.
    func runs(job: String, limit: Int) async throws -> [JobRun]
    /// Writes states copied from another ODB (`esb odb copy`; the target holds no states).
    func insertCopied(_ states: [JobState]) async throws
    /// Keeps the newest `keep` runs of each job (by start time, as listed).
    func prune(keep: Int) async throws -> Int
}
