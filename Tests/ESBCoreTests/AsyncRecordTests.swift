@testable import ESBCore
import Foundation
import Testing

/// The steps of a durable async record (pure) and its callback payloads.
@Suite struct AsyncRecordTests {
    func retry(repeats: Int = 2, callback: String? = "cb") -> AsyncRecord {
        AsyncRecord(kind: .invokeRetry, target: "t", payload: Data("p".utf8), source: "s", origCID: "orig", callback: callback,
                    context: #"{"k":1}"#, repeats: repeats, interval: .milliseconds(100), backoff: 2, now: 1_000)
    }

    func json(_ data: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func failuresRetryAfterThePolicyDelayThenTheCallbackIsDue() {
        var record = retry()
        record.claim(now: 1_000)
        #expect(record.status == .running && record.nextRunAt == nil)
        record.recordAttempt(.failure(AttemptError(description: "E: one")), now: 1_010, jitter: 0)
        #expect(record.status == .pending && record.nextRunAt == 1_110 && record.attempts == 1)
        record.claim(now: 1_110)
        record.recordAttempt(.failure(AttemptError(description: "E: two")), now: 1_120, jitter: 0)
        #expect(record.nextRunAt == 1_320, "backoff 2: 200 ms")
        record.claim(now: 1_320)
        record.recordAttempt(.failure(AttemptError(description: "E: three")), now: 1_330, jitter: 0)
        #expect(record.status == .failed && record.attempts == 3 && record.finishedAt == 1_330)
        #expect(record.callbackStatus == .pending && record.nextRunAt == 1_330, "the callback is due at once")
        #expect(record.finalError == "retry.exhausted: invoke/retry of 't' failed 3 times: attempt 1: E: one; attempt 2: E: two; attempt 3: E: three")
        #expect(!record.isFinished)
        record.claim(now: 1_331)
        #expect(record.callbackStatus == .running && record.callbackDeliveries == 1)
        record.recordCallback(error: nil, now: 1_340)
        #expect(record.isFinished)
    }

    @Test func successStopsAndWithoutCallbackNothingIsDue() {
        var record = retry(callback: nil)
        record.claim(now: 1_000)
        record.recordAttempt(.success(Data()), now: 1_005)
        #expect(record.status == .done && record.nextRunAt == nil && record.isFinished && record.finalError == nil)
    }

    @Test func aCallbackHandedOverTwiceIsMarkedRedelivered() throws {
        var record = retry()
        record.claim(now: 1_000)
        record.recordAttempt(.success(Data("answer".utf8)), now: 1_500)
        record.claim(now: 1_500)
        let first = try json(record.callbackPayload())
        #expect(first["redelivered"] as? Bool == false)
        record.interrupt(now: 1_600)  // the process stopped during the callback
        #expect(record.callbackStatus == .pending && record.nextRunAt == 1_600)
        record.claim(now: 1_700)
        let second = try json(record.callbackPayload())
        #expect(second["redelivered"] as? Bool == true)
        #expect(second["callback_id"] as? String == first["callback_id"] as? String, "a stable callback_id")
    }

    @Test func aMissingCallbackServiceDefersWithoutCountingADelivery() {
        var record = retry()
        record.claim(now: 0)
        record.recordAttempt(.success(Data()), now: 0)
        record.claim(now: 0)
        record.deferCallback(reason: "invoke.unknown_service: no callback service named 'cb' is deployed", now: 10)
        #expect(record.callbackStatus == .pending && record.callbackDeliveries == 0 && record.nextRunAt == 5_010)
        record.claim(now: 5_010)
        record.deferCallback(reason: "again", now: 5_010)
        #expect(record.nextRunAt == 15_010, "doubles")
    }

    @Test func retryCallbackPayloadHasEveryFieldOfTheContract() throws {
        var record = retry()
        record.claim(now: 1_000)
        record.recordAttempt(.failure(AttemptError(description: "E: one")), now: 1_000, jitter: 0)
        record.claim(now: 1_100)
        record.recordAttempt(.success(Data("fine".utf8)), now: 1_234)
        record.claim(now: 1_234)
        let payload = try json(record.callbackPayload())
        #expect(Set(payload.keys) == ["ok", "source", "target", "cid", "orig_cid", "repeats", "attempts", "interval_ms",
                                      "req_ts_utc", "resp_ts_utc", "context", "response", "error", "callback_id", "redelivered"])
        #expect(payload["ok"] as? Bool == true)
        #expect(payload["attempts"] as? Int == 2 && payload["repeats"] as? Int == 2 && payload["interval_ms"] as? Int == 100)
        #expect(payload["context"] as? String == #"{"k":1}"#)
        #expect(payload["response"] as? String == "fine")
        #expect(payload["error"] is NSNull)
        #expect(payload["req_ts_utc"] as? String == "1970-01-01T00:00:01.000Z")
        #expect(payload["resp_ts_utc"] as? String == "1970-01-01T00:00:01.234Z")
        #expect(payload["source"] as? String == "s" && payload["orig_cid"] as? String == "orig")
    }

    @Test func invokeAsyncCallbackPayloadHasTheShortShape() throws {
        var record = AsyncRecord(kind: .invokeAsync, target: "t", payload: Data(), source: nil, origCID: nil, callback: "cb", now: 0)
        record.claim(now: 0)
        record.recordAttempt(.failure(AttemptError(description: "esb.internal: boom")), now: 1)
        #expect(record.status == .failed, "one attempt only")
        record.claim(now: 1)
        let payload = try json(record.callbackPayload())
        #expect(Set(payload.keys) == ["cid", "ok", "service", "response", "error", "callback_id", "redelivered"])
        #expect(payload["error"] as? String == "esb.internal: boom")
        #expect(payload["response"] is NSNull)
    }
}
