import Foundation

/// Reads files under /proc, whose reported size is 0: read to EOF, never by `st_size`.
public enum ProcFile {
    /// The whole file as text, or an empty string when it cannot be read.
    public static func read(_ path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }
}
