import ESBService
import Foundation

/// How a record moves from step to step. Pure: the scheduler performs the steps and stores
/// the record after each one.
extension AsyncRecord {
    /// Whether the target is finished and only the callback may remain.
    var isAtCallback: Bool { status == .done || status == .failed }

    /// The scheduler takes the record: the target's next attempt, or the callback, starts now.
    mutating func claim(now: Int64) {
        nextRunAt = nil
        updatedAt = now
        if isAtCallback {
            callbackStatus = .running
            callbackDeliveries += 1
        } else {
            status = .running
        }
    }

    /// Records one attempt's outcome (the response payload, or the error's description):
    /// done; pending again after the retry policy's delay; or failed after the last attempt.
    /// A finished record with a callback is due for it at once.
    mutating func recordAttempt(_ outcome: Result<Data, AttemptError>, now: Int64,
                                jitter: Double = Double.random(in: -0.1...0.1)) {
        attempts += 1
        updatedAt = now
        switch outcome {
        case .success(let payload):
            status = .done
            response = payload
        case .failure(let error):
            errors.append(error.description)
            if attempts <= repeats {
                status = .pending
                nextRunAt = now + retryPolicy.delay(beforeRetry: attempts, random: jitter).milliseconds
                return
            }
            status = .failed
        }
        finishedAt = now
        nextRunAt = callbackStatus == .pending ? now : nil
    }

    /// The callback service ran (`error` is what it threw, if anything): never delivered again.
    mutating func recordCallback(error: String?, now: Int64) {
        callbackStatus = .delivered
        callbackError = error
        updatedAt = now
    }

    /// The callback service is not deployed (or inactive): keep the callback and try again
    /// later, 5 s doubling up to 5 minutes.
    mutating func deferCallback(reason: String, now: Int64) {
        callbackStatus = .pending
        callbackDeliveries -= 1
        callbackDeferrals += 1
        callbackError = reason
        updatedAt = now
        nextRunAt = now + min(300_000, 5_000 << Int64(min(callbackDeferrals - 1, 6)))
    }

    /// A step cut short by a shutdown: due again at once. The callback, if it had been handed
    /// over, will be marked redelivered.
    mutating func interrupt(now: Int64) {
        if status == .running { status = .pending }
        if callbackStatus == .running { callbackStatus = .pending }
        interruptions += 1
        updatedAt = now
        nextRunAt = now
    }

    /// What failed, as the caller sees it: the error of a single attempt, or for invoke/retry
    /// `retry.exhausted` listing every attempt's error.
    var finalError: String? {
        guard status == .failed else { return nil }
        switch kind {
        case .invokeAsync:
            return errors.last
        case .invokeRetry:
            return InvokeRetryRunner.exhausted(target: target, errors: errors).description
        }
    }
}

/// An attempt's error as stored: its description (`CODE: message` for a ``ServiceError``).
struct AttemptError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ error: any Error) { description = "\(error)" }
    init(description: String) { self.description = description }
}
