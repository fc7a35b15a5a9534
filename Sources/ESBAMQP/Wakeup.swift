import CESBRabbitMQ
import Glibc

/// An eventfd that wakes a connection's owner thread out of `poll`.
final class Wakeup: Sendable {
    let descriptor: Int32

    init() {
        descriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(descriptor >= 0, "eventfd failed: errno \(errno)")
    }

    deinit { Glibc.close(descriptor) }

    func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(descriptor, &one, 8)
    }

    /// Clears pending signals.
    func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(descriptor, &value, 8)
    }

    /// Waits until signalled, `socket` is readable (when given) or `milliseconds` pass.
    /// Returns whether the socket is readable.
    @discardableResult
    func wait(socket: Int32? = nil, milliseconds: Int) -> Bool {
        var fds = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
        if let socket { fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        let ready = poll(&fds, nfds_t(fds.count), Int32(clamping: milliseconds))
        if ready > 0 && fds[0].revents != 0 { drain() }
        return ready > 0 && fds.count > 1 && fds[1].revents != 0
    }
}
