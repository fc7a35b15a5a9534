import ESBService

/// When invoke/retry tries again: `interval` after the first failure, multiplied by `backoff`
/// after each further one, capped at `maxInterval`, each delay jittered by ±10 %. Pure.
struct RetryPolicy: Sendable {
    var repeats: Int
    var interval: Duration
    var backoff: Double
    var maxInterval: Duration?

    init(repeats: Int, interval: Duration, backoff: Double = 1, maxInterval: Duration? = nil) {
        self.repeats = max(0, repeats)
        self.interval = interval
        self.backoff = max(1, backoff)
        self.maxInterval = maxInterval
    }

    init(_ request: InvokeRetryRequest) {
        self.init(repeats: request.repeats, interval: request.interval, backoff: request.backoff,
                  maxInterval: request.maxInterval)
    }

    /// The most retries one invoke/retry may ask for.
    static let maximumRepeats = 1_000_000
    /// The longest interval, and the longest a backoff grows to: beyond, a delay stays here
    /// (so that `interval × backoff^n` never overflows `Duration`).
    static let longestInterval: Duration = .seconds(30 * 86_400)

    /// Checks a request's numbers before anything runs.
    /// - Throws: ``ServiceError`` `argument.invalid` naming the argument.
    static func check(_ request: InvokeRetryRequest) throws {
        let call = "patterns.invokeRetry"
        guard (0...maximumRepeats).contains(request.repeats) else {
            throw ServiceError.invalidArgument(call, "repeats", request.repeats, allowed: "from 0 to \(maximumRepeats)")
        }
        guard request.interval >= .zero, request.interval <= longestInterval else {
            throw ServiceError.invalidArgument(call, "interval", request.interval, allowed: "from 0 to 30 days")
        }
        guard request.backoff.isFinite, request.backoff >= 1, request.backoff <= 1000 else {
            throw ServiceError.invalidArgument(call, "backoff", request.backoff, allowed: "a number from 1 to 1000")
        }
        if let maxInterval = request.maxInterval, maxInterval < .zero || maxInterval > longestInterval {
            throw ServiceError.invalidArgument(call, "maxInterval", maxInterval, allowed: "from 0 to 30 days")
        }
    }

    /// The delay before retry number `retry` (1-based), before jitter.
    func baseDelay(beforeRetry retry: Int) -> Duration {
        var delay = interval
        let ceiling = min(maxInterval ?? Self.longestInterval, Self.longestInterval)
        if backoff == 1 || delay == .zero { return min(delay, ceiling) }
        for _ in 1..<max(1, retry) {
            // Multiplying a capped delay by at most 1000 stays far inside Duration's range.
            delay = delay * backoff
            if delay > ceiling { return ceiling }
        }
        if let maxInterval, delay > maxInterval { return maxInterval }
        return delay
    }

    /// The delay with ±10 % jitter (never beyond `maxInterval`).
    func delay(beforeRetry retry: Int, random: Double = Double.random(in: -0.1...0.1)) -> Duration {
        var jittered = baseDelay(beforeRetry: retry) * (1 + random)
        if let maxInterval, jittered > maxInterval { jittered = maxInterval }
        return jittered
    }
}
