import ESBService
import Glibc

/// The scheduler benchmark's no-op job service: appends how late it started (now minus
/// `x-esb-scheduled-at`, in µs) to the file its payload names, with one write on a file
/// descriptor opened once (the measurement costs as little as it can).
struct Delay: Service {
    static let name = "bench.delay"
    nonisolated(unsafe) static var fd: Int32 = -1

    func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        guard let due = Self.microseconds(Array((request.headers["x-esb-scheduled-at"] ?? "").utf8)) else { return .text("") }
        if Self.fd < 0 { Self.fd = open(request.text, O_WRONLY | O_APPEND | O_CREAT, 0o644) }
        let delay = Int(now.tv_sec) * 1_000_000 + Int(now.tv_nsec) / 1000 - due
        let line = Array("\(delay)\n".utf8)
        _ = line.withUnsafeBytes { write(Self.fd, $0.baseAddress, $0.count) }
        return .text("")
    }

    /// `2026-12-06T21:30:00.123Z` in µs since 1970.
    static func microseconds(_ text: [UInt8]) -> Int? {
        guard text.count == 24 else { return nil }
        func number(_ from: Int, _ count: Int) -> Int {
            text[from..<from + count].reduce(0) { $0 * 10 + Int($1) - 48 }
        }
        var time = tm()
        time.tm_year = Int32(number(0, 4) - 1900)
        time.tm_mon = Int32(number(5, 2) - 1)
        time.tm_mday = Int32(number(8, 2))
        time.tm_hour = Int32(number(11, 2))
        time.tm_min = Int32(number(14, 2))
        time.tm_sec = Int32(number(17, 2))
        return Int(timegm(&time)) * 1_000_000 + number(20, 3) * 1000
    }
}
