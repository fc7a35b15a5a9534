import ESBService
import Foundation
import Glibc

/// The scheduler benchmark's no-op job service: appends how late it started (now minus
/// `x-esb-scheduled-at`, in ms) to the file its payload names.
struct Delay: Service {
    static let name = "bench.delay"

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowMS = Double(now.tv_sec) * 1000 + Double(now.tv_nsec) / 1_000_000
        guard let due = Self.milliseconds(request.headers["x-esb-scheduled-at"] ?? "") else { return .text("") }
        let line = Array(String(format: "%.3f\n", nowMS - due).utf8)
        let fd = open(request.text, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return .text("")
    }

    /// `2026-12-06T21:30:00.123Z` in ms since 1970.
    static func milliseconds(_ text: String) -> Double? {
        let parts = text.split(whereSeparator: { "-T:.Z".contains($0) }).compactMap { Int($0) }
        guard parts.count == 7 else { return nil }
        var time = tm()
        time.tm_year = Int32(parts[0] - 1900)
        time.tm_mon = Int32(parts[1] - 1)
        time.tm_mday = Int32(parts[2])
        time.tm_hour = Int32(parts[3])
        time.tm_min = Int32(parts[4])
        time.tm_sec = Int32(parts[5])
        return Double(timegm(&time)) * 1000 + Double(parts[6])
    }
}
