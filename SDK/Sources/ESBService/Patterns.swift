import Foundation

/// Integration patterns.
public struct Patterns: Sendable {
    let context: ServiceContext

    /// invoke/retry: call a service, retrying on failure.
    public var invokeRetry: InvokeRetry { InvokeRetry(context: context) }
}

/// Calls a service and retries it on failure (a thrown error; an empty response is a success).
/// `repeats` counts retries after the first try, so at most `repeats + 1` calls.
public struct InvokeRetry: Sendable {
    let context: ServiceContext

    /// Tries `target`; on failure retries blocking (`asyncFallback: false`) and returns the
    /// first success or throws `retry.exhausted` listing every attempt's error; or, with
    /// `asyncFallback: true`, returns `.pending(cid:)` after the first failure and retries in
    /// the background, then invokes `callback`.
    public func invoke(_ target: String, payload: Data, repeats: Int, interval: Duration, backoff: Double = 1,
                       maxInterval: Duration? = nil, asyncFallback: Bool = false, callback: String? = nil,
                       context userContext: String? = nil) async throws -> InvokeRetryResult {
        try await context.host.invokeRetry(
            InvokeRetryRequest(target: target, payload: payload, repeats: repeats, interval: interval,
                               backoff: backoff, maxInterval: maxInterval, mode: asyncFallback ? .asyncFallback : .blocking,
                               callback: callback, context: userContext),
            from: context)
    }

    /// ``invoke(_:payload:repeats:interval:backoff:maxInterval:asyncFallback:callback:context:)`` with a text payload.
    public func invoke(_ target: String, payload: String, repeats: Int, interval: Duration, backoff: Double = 1,
                       maxInterval: Duration? = nil, asyncFallback: Bool = false, callback: String? = nil,
                       context userContext: String? = nil) async throws -> InvokeRetryResult {
        try await invoke(target, payload: Data(payload.utf8), repeats: repeats, interval: interval, backoff: backoff,
                         maxInterval: maxInterval, asyncFallback: asyncFallback, callback: callback, context: userContext)
    }

    /// Runs every attempt in the background and returns the cid at once; `callback` gets the outcome.
    public func invokeAsync(_ target: String, payload: Data, repeats: Int, interval: Duration, backoff: Double = 1,
                            maxInterval: Duration? = nil, callback: String? = nil,
                            context userContext: String? = nil) async throws -> String {
        let result = try await context.host.invokeRetry(
            InvokeRetryRequest(target: target, payload: payload, repeats: repeats, interval: interval,
                               backoff: backoff, maxInterval: maxInterval, mode: .background,
                               callback: callback, context: userContext),
            from: context)
        guard case .pending(let cid) = result else {
            throw ServiceError(.internalError, "invokeRetry.invokeAsync: the server returned a response instead of a cid")
        }
        return cid
    }

    /// ``invokeAsync(_:payload:repeats:interval:backoff:maxInterval:callback:context:)`` with a text payload.
    public func invokeAsync(_ target: String, payload: String, repeats: Int, interval: Duration, backoff: Double = 1,
                            maxInterval: Duration? = nil, callback: String? = nil,
                            context userContext: String? = nil) async throws -> String {
        try await invokeAsync(target, payload: Data(payload.utf8), repeats: repeats, interval: interval,
                              backoff: backoff, maxInterval: maxInterval, callback: callback, context: userContext)
    }
}

/// The outcome of ``InvokeRetry/invoke(_:payload:repeats:interval:backoff:maxInterval:asyncFallback:callback:context:)``.
public enum InvokeRetryResult: Sendable {
    case response(ServiceResponse)
    /// Only with `asyncFallback: true`: the first try failed, retries go on in the background.
    case pending(cid: String)
}

/// An invoke/retry request as the server receives it.
public struct InvokeRetryRequest: Sendable {
    public enum Mode: String, Sendable { case blocking, asyncFallback, background }
    public var target: String
    public var payload: Data
    public var repeats: Int
    public var interval: Duration
    public var backoff: Double
    public var maxInterval: Duration?
    public var mode: Mode
    public var callback: String?
    public var context: String?

    public init(target: String, payload: Data, repeats: Int, interval: Duration, backoff: Double = 1,
                maxInterval: Duration? = nil, mode: Mode, callback: String? = nil, context: String? = nil) {
        self.target = target
        self.payload = payload
        self.repeats = repeats
        self.interval = interval
        self.backoff = backoff
        self.maxInterval = maxInterval
        self.mode = mode
        self.callback = callback
        self.context = context
    }
}
