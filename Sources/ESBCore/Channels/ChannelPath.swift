/// A channel's URL path pattern: literal segments and `{param}` segments.
public struct ChannelPath: Sendable, Equatable {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }
    let segments: [Segment]

    /// Why `path` is not a valid pattern, or nil.
    public static func validate(_ path: String) -> String? {
        var names: Set<String> = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            guard segment.hasPrefix("{") || segment.hasSuffix("}") || !segment.contains("{") else {
                return "has a malformed segment '\(segment)'"
            }
            if segment.hasPrefix("{") {
                guard segment.hasSuffix("}"), segment.count > 2 else { return "has a malformed parameter '\(segment)'" }
                let name = String(segment.dropFirst().dropLast())
                guard names.insert(name).inserted else { return "repeats the parameter '\(name)'" }
            }
        }
        return nil
    }

    public init(_ pattern: String) {
        segments = pattern.split(separator: "/", omittingEmptySubsequences: true).map { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}")
                ? .parameter(String(segment.dropFirst().dropLast())) : .literal(String(segment))
        }
    }

    /// How many literal segments: more specific patterns are tried first.
    var specificity: Int { segments.filter { if case .literal = $0 { true } else { false } }.count }

    /// The parameters when `path` matches, else nil.
    public func match(_ path: Substring) -> [String: String]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count == segments.count else { return nil }
        var parameters: [String: String] = [:]
        for (part, segment) in zip(parts, segments) {
            switch segment {
            case .literal(let text):
                guard part == text else { return nil }
            case .parameter(let name):
                parameters[name] = String(part).removingPercentEncoding ?? String(part)
            }
        }
        return parameters
    }
}
