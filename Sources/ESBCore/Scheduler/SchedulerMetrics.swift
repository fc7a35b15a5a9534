import Metrics
import Synchronization

/// The scheduler's metrics, each made once (a lookup in the metrics backend per run would
/// cost more than the run).
final class SchedulerMetrics: Sendable {
    let startDelay = Timer(label: "esb_scheduler_start_delay_seconds", preferredDisplayUnit: .seconds)
    let interrupted = Counter(label: "esb_scheduler_interrupted_total")
    private let counters = Mutex<[Key: Counter]>([:])

    /// A job's counter: of runs with a status, or of failures (`status` nil).
    private struct Key: Hashable {
        let job: String
        let status: JobRun.Status?
    }

    func runs(_ job: String, _ status: JobRun.Status) -> Counter {
        counter(Key(job: job, status: status)) {
            Counter(label: "esb_scheduler_runs_total", dimensions: [("job", job), ("status", status.rawValue)])
        }
    }

    func failures(_ job: String) -> Counter {
        counter(Key(job: job, status: nil)) { Counter(label: "esb_scheduler_failures_total", dimensions: [("job", job)]) }
    }

    private func counter(_ key: Key, _ make: () -> Counter) -> Counter {
        counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = make()
            counters[key] = counter
            return counter
        }
    }
}
