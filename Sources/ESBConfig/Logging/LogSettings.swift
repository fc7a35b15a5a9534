import Logging
import Synchronization

/// Level and format shared by every logger of the process, changeable live on SIGHUP.
public final class LogSettings: Sendable {
    private struct State {
        var level: Logger.Level
        var format: LogFormat
    }
    private let state: Mutex<State>

    public init(level: LogLevel, format: LogFormat) {
        state = Mutex(State(level: Logger.Level(level), format: format))
    }

    public var level: Logger.Level { state.withLock { $0.level } }
    public var format: LogFormat { state.withLock { $0.format } }

    /// Applies new settings; returns whether anything changed.
    @discardableResult
    public func update(level: LogLevel, format: LogFormat) -> Bool {
        state.withLock { state in
            let new = State(level: Logger.Level(level), format: format)
            defer { state = new }
            return state.level != new.level || state.format != new.format
        }
    }
}

extension Logger.Level {
    /// The swift-log level for a `log_level` value.
    public init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}
