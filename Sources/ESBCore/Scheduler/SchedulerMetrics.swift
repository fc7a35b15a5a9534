import Metrics
import Synchronization

/// The scheduler's metrics, each made once (a lookup in the metrics backend per run would
/// cost more than the run).
final class SchedulerMetrics: Sendable {
    let startDelay = Timer(label: "esb_scheduler_start_delay_seconds", preferredDisplayUnit: .seconds)
    private let counters = Mutex<[String: Counter]>([:])

    func runs(_ job: String, _ status: JobRun.Status) -> Counter {
        counter("runs\u{0}\(job)\u{0}\(status.rawValue)") {
            Counter(label: "esb_scheduler_runs_total", dimensions: [("job", job), ("status", status.rawValue)])
        }
    }

    func failures(_ job: String) -> Counter {
        counter("failures\u{0}\(job)") { Counter(label: "esb_scheduler_failures_total", dimensions: [("job", job)]) }
    }

    private func counter(_ key: String, _ make: () -> Counter) -> Counter {
        counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = make()
            counters[key] = counter
            return counter
        }
    }
}
