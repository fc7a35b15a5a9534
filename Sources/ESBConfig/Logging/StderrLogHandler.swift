import Foundation
import Logging
import Synchronization

/// Writes log lines to stderr as text or JSON, with the process-wide ``LogSettings``.
///
/// Text: `2026-11-29T11:22:57.123Z info esbd: message esb.key=value`.
/// JSON: one object a line with `ts`, `level`, `logger`, `message` and the metadata keys.
public struct StderrLogHandler: LogHandler {
    private static let output = Mutex(())

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let settings: LogSettings
    private var levelOverride: Logger.Level?

    public init(label: String, settings: LogSettings) {
        self.label = label
        self.settings = settings
    }

    /// Installs this handler for every logger of the process; call once, first thing.
    public static func bootstrap(settings: LogSettings) {
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, settings: settings) }
    }

    public var logLevel: Logger.Level {
        get { levelOverride ?? settings.level }
        set { levelOverride = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = switch settings.format {
        case .text: Self.text(level: event.level, label: label, message: event.message.description, metadata: merged)
        case .json: Self.json(level: event.level, label: label, message: event.message.description, metadata: merged)
        }
        Self.output.withLock { _ in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true)
            .timeZone(separator: .omitted).dateSeparator(.dash).timeSeparator(.colon))
    }

    /// One line whatever the message holds: control characters (a newline in a payload,
    /// an ANSI escape) are written escaped, so that nothing logged can forge a log line.
    static func text(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(timestamp()) \(level) \(label): \(escapingControlCharacters(message))"
        for key in metadata.keys.sorted() {
            line += " \(escapingControlCharacters(key))=\(quotedIfNeeded(escapingControlCharacters(metadata[key]!.description)))"
        }
        return line
    }

    /// A metadata value (backslashes already doubled) that holds a space, `=` or a quote is
    /// written in double quotes, with `\"`, so that a user name like `x esb.client=1.2.3.4`
    /// cannot pose as another field.
    static func quotedIfNeeded(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// `text` with C0 and C1 control characters and DEL as `\n`, `\r`, `\t` or `\u{…}`.
    static func escapingControlCharacters(_ text: String) -> String {
        func isControl(_ scalar: Unicode.Scalar) -> Bool {
            scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar == "\u{2028}" || scalar == "\u{2029}"
        }
        guard text.unicodeScalars.contains(where: { isControl($0) || $0 == "\\" }) else { return text }
        var escaped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if scalar == "\\" {
                // An escaped backslash, so that a literal `\n` in a payload reads differently from a newline.
                escaped.append(contentsOf: "\\\\".unicodeScalars)
                continue
            }
            guard isControl(scalar) else {
                escaped.append(scalar)
                continue
            }
            let replacement = switch scalar {
            case "\n": "\\n"
            case "\r": "\\r"
            case "\t": "\\t"
            default: "\\u{" + String(scalar.value, radix: 16) + "}"
            }
            escaped.append(contentsOf: replacement.unicodeScalars)
        }
        return String(escaped)
    }

    static func json(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var object: [String: Any] = ["ts": timestamp(), "level": level.rawValue, "logger": label, "message": message]
        // Metadata never overwrites the line's own fields.
        for (key, value) in metadata { object[["ts", "level", "logger", "message"].contains(key) ? "metadata." + key : key] = value.jsonValue }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return text(level: level, label: label, message: message, metadata: metadata)
        }
        return String(decoding: data, as: UTF8.self)
    }
}

extension Logger.MetadataValue {
    var jsonValue: Any {
        switch self {
        case .string(let value): value
        case .stringConvertible(let value): value.description
        case .array(let values): values.map(\.jsonValue)
        case .dictionary(let values): values.mapValues(\.jsonValue)
        }
    }
}
