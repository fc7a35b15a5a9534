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

    /// The delay before retry number `retry` (1-based), before jitter.
    func baseDelay(beforeRetry retry: Int) -> Duration {
        var delay = interval
        for _ in 1..<max(1, retry) {
            delay = delay * backoff
            if let maxInterval, delay > maxInterval { return maxInterval }
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
