import Foundation

/// The JSON a callback service receives: the invokeAsync shape or the invoke/retry shape, with a stable `callback_id`.
extension AsyncRecord {
    /// The callback's payload: the `invokeAsync` shape or the invoke/retry shape. `redelivered`
    /// is true when an earlier hand-over of this callback never recorded its end (the process
    /// died during it).
    func callbackPayload() -> Data {
        let redelivered = callbackDeliveries > 1
        let responseText = status == .done ? String(decoding: response ?? Data(), as: UTF8.self) : nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        switch kind {
        case .invokeAsync:
            return (try? encoder.encode(InvokeAsyncCallback(
                cid: cid, ok: status == .done, service: target, response: responseText, error: finalError,
                callbackID: callbackID, redelivered: redelivered))) ?? Data()
        case .invokeRetry:
            return (try? encoder.encode(InvokeRetryCallback(
                ok: status == .done, source: source, target: target, cid: cid, origCID: origCID, repeats: repeats,
                attempts: attempts, intervalMS: intervalMS, requestTime: Self.timestamp(createdAt),
                responseTime: finishedAt.map(Self.timestamp), context: context, response: responseText, error: finalError,
                callbackID: callbackID, redelivered: redelivered))) ?? Data()
        }
    }

    /// ISO 8601 in UTC with milliseconds, e.g. `2026-11-29T17:02:02.123Z`.
    public static func timestamp(_ milliseconds: Int64) -> String {
        // Whole seconds through the formatter, milliseconds by hand: a Double of 1.234 s is 1.2339….
        let (seconds, fraction) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        let whole = Date(timeIntervalSince1970: Double(fraction < 0 ? seconds - 1 : seconds)).ISO8601Format()
        let millis = fraction < 0 ? fraction + 1000 : fraction
        return whole.dropLast() + "." + String(String(millis + 1000).dropFirst()) + "Z"
    }
}

/// `{cid, ok, service, response, error, callback_id, redelivered}`.
private struct InvokeAsyncCallback: Encodable {
    var cid: String
    var ok: Bool
    var service: String
    @ExplicitNull var response: String?
    @ExplicitNull var error: String?
    var callbackID: String
    var redelivered: Bool

    enum CodingKeys: String, CodingKey {
        case cid, ok, service, response, error, redelivered
        case callbackID = "callback_id"
    }
}

/// `ok, source, target, cid, orig_cid, repeats, attempts, interval_ms, req_ts_utc, resp_ts_utc,
/// context, response, error, callback_id, redelivered`.
private struct InvokeRetryCallback: Encodable {
    var ok: Bool
    @ExplicitNull var source: String?
    var target: String
    var cid: String
    @ExplicitNull var origCID: String?
    var repeats: Int
    var attempts: Int
    var intervalMS: Int64
    var requestTime: String
    @ExplicitNull var responseTime: String?
    @ExplicitNull var context: String?
    @ExplicitNull var response: String?
    @ExplicitNull var error: String?
    var callbackID: String
    var redelivered: Bool

    enum CodingKeys: String, CodingKey {
        case ok, source, target, cid, repeats, attempts, context, response, error, redelivered
        case origCID = "orig_cid"
        case intervalMS = "interval_ms"
        case requestTime = "req_ts_utc"
        case responseTime = "resp_ts_utc"
        case callbackID = "callback_id"
    }
}
