#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// The threads on which a blocking C call may run in place: a service executor's workers.
///
/// A C connection (hiredis) is used by one thread at a time, and a service thread may borrow
/// an idle one for a call and make the blocking call itself, sparing two thread hand-offs.
/// Swift's cooperative pool and NIO's event loops must never block, and are never marked.
public enum ServiceThread {
    /// Whether the calling thread is a service thread.
    public static var isCurrent: Bool {
        guard let key else { return false }
        return pthread_getspecific(key) != nil
    }

    /// Marks the calling thread as a service thread for the rest of its life (called by the
    /// service executor's workers as they start).
    public static func markCurrent() {
        guard let key else { return }
        _ = pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
    }

    /// nil when the process has no thread-specific key left: then no thread counts as a
    /// service thread, and every call takes the hand-off (slower, never wrong).
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        return pthread_key_create(&key, nil) == 0 ? key : nil
    }()
}
