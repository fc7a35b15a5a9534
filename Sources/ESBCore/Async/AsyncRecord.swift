import ESBService
import ESBStore
import Foundation

/// One durable async invocation (`invokeAsync`) or background invoke/retry, as stored in the
/// ODB table `async_invocation`. Times are milliseconds since the Unix epoch.
///
/// Two phases: the target's attempts (`status` pending → running → done | failed, or back to
/// pending for a retry), then the callback (`callbackStatus` pending → running → delivered).
/// `nextRunAt` is set while a step waits for the scheduler, and cleared while it runs.
public struct AsyncRecord: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// `context.invokeAsync`: one attempt.
        case invokeAsync = "invoke_async"
        /// `patterns.invokeRetry` in the background (`invokeAsync`, or `invoke` with `asyncFallback`).
        case invokeRetry = "invoke_retry"
    }

    public enum Status: String, Sendable, Codable, CaseIterable {
        case pending, running, done, failed
    }

    public enum CallbackStatus: String, Sendable, Codable, CaseIterable {
        /// No callback was asked for.
        case none
        case pending, running, delivered
    }

    public var cid: String
    public var kind: Kind
    /// The invoking service, if any.
    public var source: String?
    /// The cid of the invoking service's call.
    public var origCID: String?
    public var target: String
    public var payload: Data
    public var callback: String?
    public var callbackID: String
    /// The caller's `context` string, handed back untouched.
    public var context: String?
    /// Retries after the first failure: at most `repeats + 1` attempts.
    public var repeats: Int
    public var intervalMS: Int64
    public var backoff: Double
    public var maxIntervalMS: Int64?
    /// Attempts finished so far (an attempt cut short by a crash does not count).
    public var attempts: Int
    public var status: Status
    /// Each failed attempt's error, in order (`CODE: message` for a `ServiceError`).
    public var errors: [String]
    public var response: Data?
    public var nextRunAt: Int64?
    public var callbackStatus: CallbackStatus
    /// How many times the callback was handed to the callback service.
    public var callbackDeliveries: Int
    /// How many times delivery waited because the callback service was not deployed.
    public var callbackDeferrals: Int
    public var callbackError: String?
    /// Attempts or callbacks cut short by a crash or a shutdown, then resumed.
    public var interruptions: Int
    public var createdAt: Int64
    public var updatedAt: Int64
    public var finishedAt: Int64?

    /// The columns' names.
    enum CodingKeys: String, CodingKey {
        case cid, kind, source, target, payload, callback, context, repeats, backoff, attempts, status, errors, response
        case interruptions
        case origCID = "orig_cid"
        case callbackID = "callback_id"
        case intervalMS = "interval_ms"
        case maxIntervalMS = "max_interval_ms"
        case nextRunAt = "next_run_at"
        case callbackStatus = "callback_status"
        case callbackDeliveries = "callback_deliveries"
        case callbackDeferrals = "callback_deferrals"
        case callbackError = "callback_error"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case finishedAt = "finished_at"
    }

    /// A new record, due at `now` unless `nextRunAt` says otherwise.
    init(kind: Kind, target: String, payload: Data, source: String?, origCID: String?, callback: String?,
         context: String? = nil, repeats: Int = 0, interval: Duration = .zero, backoff: Double = 1,
         maxInterval: Duration? = nil, now: Int64) {
        cid = ServiceInvoker.newCID()
        self.kind = kind
        self.source = source
        self.origCID = origCID
        self.target = target
        self.payload = payload
        self.callback = callback
        callbackID = ServiceInvoker.newCID()
        self.context = context
        self.repeats = max(0, repeats)
        intervalMS = interval.milliseconds
        self.backoff = max(1, backoff)
        maxIntervalMS = maxInterval?.milliseconds
        attempts = 0
        status = .pending
        errors = []
        nextRunAt = now
        callbackStatus = callback == nil ? .none : .pending
        callbackDeliveries = 0
        callbackDeferrals = 0
        interruptions = 0
        createdAt = now
        updatedAt = now
    }

    /// Whether nothing is left to do.
    public var isFinished: Bool {
        (status == .done || status == .failed) && (callbackStatus == .none || callbackStatus == .delivered)
    }

    var retryPolicy: RetryPolicy {
        RetryPolicy(repeats: repeats, interval: .milliseconds(intervalMS), backoff: backoff,
                    maxInterval: maxIntervalMS.map { .milliseconds($0) })
    }

    /// The current time as stored.
    static func now() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
