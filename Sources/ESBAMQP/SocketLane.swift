import Foundation

/// A connection's socket shared by its owner and the service threads that write their own
/// sends. Whoever writes to the socket or calls librabbitmq holds its lock; `channel` and
/// `isOpen` change only under it.
final class SocketLane: @unchecked Sendable {
    let descriptor: Int32
    let frameMax: Int
    var channel: UInt16
    var isOpen = true
    private let lock = NSLock()

    init(descriptor: Int32, frameMax: Int, channel: UInt16) {
        self.descriptor = descriptor
        self.frameMax = frameMax
        self.channel = channel
    }

    func withSocket<T, Failure: Error>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// `body`'s result if the socket is free now; nil (without waiting) if it is not.
    func tryWithSocket<T>(_ body: (SocketLane) -> T) -> T? {
        guard lock.try() else { return nil }
        defer { lock.unlock() }
        return body(self)
    }
}
