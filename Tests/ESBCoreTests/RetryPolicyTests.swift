@testable import ESBCore
import ESBService
import Foundation
import Testing

@Suite struct RetryPolicyTests {
    func policy(interval: Duration = .seconds(1), backoff: Double = 1, max: Duration? = nil) -> RetryPolicy {
        var request = InvokeRetryRequest(target: "t", payload: Data(), repeats: 5, interval: interval, backoff: backoff,
                                         maxInterval: max, mode: .blocking, callback: nil, context: nil)
        request.repeats = 5
        return RetryPolicy(request)
    }

    @Test func backoffOneKeepsTheIntervalFixed() {
        let fixed = policy()
        #expect((1...5).map { fixed.baseDelay(beforeRetry: $0) } == Array(repeating: .seconds(1), count: 5))
    }

    @Test func backoffMultipliesUpToTheCapAndJitterStaysWithinTenPercentAndTheCap() {
        let growing = policy(interval: .milliseconds(100), backoff: 2, max: .milliseconds(500))
        #expect((1...5).map { growing.baseDelay(beforeRetry: $0) } ==
                [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(500), .milliseconds(500)])
        func near(_ a: Duration, _ b: Duration) -> Bool { abs((a - b) / .microseconds(1)) < 1 }
        #expect(near(growing.delay(beforeRetry: 1, random: 0.1), .milliseconds(110)))
        #expect(near(growing.delay(beforeRetry: 1, random: -0.1), .milliseconds(90)))
        #expect(growing.delay(beforeRetry: 5, random: 0.1) == .milliseconds(500), "never beyond the cap")
    }
}
