import ESBCore
import ESBHotDeploy
import Foundation
import Metrics
import Prometheus
import Synchronization

/// Owns the Prometheus registry behind swift-metrics and renders `/metrics`,
/// refreshing the process figures on each scrape.
public final class MetricsExporter: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let residentMemory: Prometheus.Gauge
    private let virtualMemory: Prometheus.Gauge
    private let cpuSeconds: Prometheus.Gauge
    private let openFiles: Prometheus.Gauge
    private let startTime: Prometheus.Gauge
    private let refreshers = Mutex<[@Sendable () -> Void]>([])

    /// Creates the registry and installs it as the process's metrics backend (once).
    public init(server: String) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        func gauge(_ name: String, _ unit: String, _ help: String, labels: [(String, String)] = []) -> Prometheus.Gauge {
            registry.makeGauge(descriptor: .init(namespace: "process", metricName: name, unitName: unit, helpText: help),
                               labels: labels)
        }
        residentMemory = gauge("resident_memory", "bytes", "Resident set size")
        virtualMemory = gauge("virtual_memory", "bytes", "Virtual memory size")
        cpuSeconds = gauge("cpu_seconds", "total", "User and system CPU time, seconds")
        openFiles = gauge("open", "fds", "Open file descriptors")
        startTime = gauge("start_time", "seconds", "Start time, seconds since the epoch")
        registry.makeGauge(descriptor: .init(namespace: "esb", metricName: "server", unitName: "info", helpText: "Server name"),
                           labels: [("server", server)]).set(to: 1.0)
        startTime.set(to: Date().timeIntervalSince1970)
    }

    /// Runs `refresh` before each scrape (gauges read off live state).
    public func addRefresher(_ refresh: @escaping @Sendable () -> Void) {
        refreshers.withLock { $0.append(refresh) }
    }

    /// The Prometheus text exposition.
    public func render() -> [UInt8] {
        refreshers.withLock { $0 }.forEach { $0() }
        let process = ProcessFigures.read()
        residentMemory.set(to: Double(process.residentBytes))
        virtualMemory.set(to: Double(process.virtualBytes))
        cpuSeconds.set(to: process.cpuSeconds)
        openFiles.set(to: Double(process.openFiles))
        return registry.emitToBuffer()
    }
}

/// Figures about this process from /proc.
struct ProcessFigures {
    var residentBytes = 0
    var virtualBytes = 0
    var cpuSeconds = 0.0
    var openFiles = 0

    static func read() -> ProcessFigures {
        var figures = ProcessFigures()
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let fields = ProcFile.read("/proc/self/statm").split(separator: " ").compactMap { Int($0) }
        if fields.count > 1 {
            figures.virtualBytes = fields[0] * pageSize
            figures.residentBytes = fields[1] * pageSize
        }
        var usage = rusage()
        if getrusage(RUSAGE_SELF.rawValue, &usage) == 0 {
            let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
            figures.cpuSeconds = user + system
        }
        figures.openFiles = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return figures
    }
}
