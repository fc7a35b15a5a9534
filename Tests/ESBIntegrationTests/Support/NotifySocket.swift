import Foundation

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`: records what esbd sends.
final class NotifySocket: @unchecked Sendable {
    let path: String
    private let fd: Int32

    init(directory: String) {
        path = directory + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    deinit { close(fd) }

    /// The next datagram, or nil after `timeout` seconds. Blocks a thread of its own: GCD's
    /// pool is bounded, and many tests waiting at once could exhaust it.
    func next(timeout: Double = 30) async -> String? {
        let fd = fd
        return await withCheckedContinuation { continuation in
            Thread {
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&descriptor, 1, Int32(timeout * 1000)) == 1 else {
                    continuation.resume(returning: nil)
                    return
                }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = recv(fd, &buffer, buffer.count, 0)
                continuation.resume(returning: count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil)
            }.start()
        }
    }

    /// Reads datagrams until one contains `state` (e.g. `READY=1`); returns it, or nil on timeout.
    func wait(for state: String, timeout: Double = 180) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let message = await next(timeout: deadline.timeIntervalSinceNow) else { return nil }
            if message.split(separator: "\n").contains(where: { $0 == state }) { return message }
        }
        return nil
    }
}
