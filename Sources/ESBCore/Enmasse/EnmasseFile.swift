import Foundation
import Yams

/// enmasse files: object lists keyed like Zato's (`def_sec`, `def_amqp`,
/// `outconn_amqp`, `channel_plain_http`), each object a mapping of scalars with its `name`.
/// Rendering is stable: kinds in dependency order, objects by name, fields in the kind's
/// order, so exports diff cleanly. Parsing reads YAML and JSON (a subset of YAML) alike and
/// keeps every object's line for messages.
public enum EnmasseFile {
    public enum Format: String, Sendable, CaseIterable {
        case yaml, json

        public var contentType: String { self == .yaml ? "application/yaml" : "application/json" }
    }

    /// The file text of `groups` (from ``ObjectStore/exportAll(includeSecrets:)``).
    public static func render(_ groups: [(kind: ObjectKind, objects: [ObjectFields])], format: Format) -> String {
        let ordered = groups.map { group in
            (group.kind.name, group.objects.map { orderedFields($0, kind: group.kind) })
        }
        switch format {
        case .yaml: return renderYAML(ordered)
        case .json: return renderJSON(ordered)
        }
    }

    /// `name`, then the kind's fields in order, then the secret when present.
    static func orderedFields(_ fields: ObjectFields, kind: ObjectKind) -> [(String, FieldValue)] {
        var keys = ["name"] + kind.fields.map(\.name)
        if let secret = kind.secretField { keys.append(secret) }
        return keys.compactMap { key in fields[key].map { (key, $0) } }
    }

    private static func renderYAML(_ groups: [(String, [[(String, FieldValue)]])]) -> String {
        guard !groups.isEmpty else { return "{}\n" }
        let root = Node(groups.map { kind, objects in
            (Node(kind), Node(objects.map { fields in Node(fields.map { (Node($0.0), yamlScalar($0.1)) }) }, Tag(.seq), .block))
        }, Tag(.map), .block)
        // Serializing nodes of scalars cannot fail; an empty file would be the wrong answer, so crash loudly if it does.
        return try! Yams.serialize(node: root, indent: 2, width: -1, allowUnicode: true)
    }

    /// A scalar that parses back as the same value: strings that would read as another type
    /// (`"true"`, `"5672"`, `""`) are quoted.
    private static func yamlScalar(_ value: FieldValue) -> Node {
        switch value {
        case .string(let text):
            let plain = Node(text)
            return plain.tag.rawValue == Tag.Name.str.rawValue ? Node(text, Tag(.str)) : Node(text, Tag(.str), .doubleQuoted)
        case .int(let number): return Node(String(number), Tag(.int))
        case .bool(let flag): return Node(flag ? "true" : "false", Tag(.bool))
        case .null: return Node("null", Tag(.null))
        }
    }

    private static func renderJSON(_ groups: [(String, [[(String, FieldValue)]])]) -> String {
        func quoted(_ text: String) -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            return String(decoding: (try? encoder.encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
        }
        func scalar(_ value: FieldValue) -> String {
            switch value {
            case .string(let text): quoted(text)
            case .int(let number): String(number)
            case .bool(let flag): flag ? "true" : "false"
            case .null: "null"
            }
        }
        let lists = groups.map { kind, objects in
            let items = objects.map { fields in
                "    {\n" + fields.map { "      \(quoted($0.0)): \(scalar($0.1))" }.joined(separator: ",\n") + "\n    }"
            }
            return "  \(quoted(kind)): [\n" + items.joined(separator: ",\n") + "\n  ]"
        }
        return lists.isEmpty ? "{}\n" : "{\n" + lists.joined(separator: ",\n") + "\n}\n"
    }

    /// Reads a file's objects; `name` is how messages call the file. Every problem the file
    /// has is reported at once.
    /// - Throws: ``ImportError`` naming each problem's line.
    public static func parse(_ text: String, name: String, kinds: [ObjectKind]) throws(ImportError) -> [ObjectStore.ImportItem] {
        if let problem = structureProblem(text, name: name) { throw ImportError(problems: [problem]) }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ImportError(problems: [syntaxProblem(error, name: name)])
        } catch {
            throw ImportError(problems: [.init(location: name, message: "cannot be read: \(error)")])
        }
        guard let root, root.null == nil else { return [] }
        func location(_ node: Node) -> String { node.mark.map { "\(name):\($0.line)" } ?? name }
        guard case .mapping(let lists) = root else {
            throw ImportError(problems: [.init(location: location(root), message: "the file must be a mapping of object lists (\(kinds.map(\.name).joined(separator: ", ")))")])
        }
        var items: [ObjectStore.ImportItem] = []
        var problems: [ImportError.Problem] = []
        for (key, list) in lists {
            guard let kindName = key.string, let kind = kinds.first(where: { $0.name == kindName }) else {
                problems.append(.init(location: location(key), message: "unknown object list '\(key.string ?? "?")'; known: \(kinds.map(\.name).joined(separator: ", "))"))
                continue
            }
            if list.null != nil { continue }
            guard case .sequence(let objects) = list else {
                problems.append(.init(location: location(list), message: "\(kindName) must be a list of objects"))
                continue
            }
            for object in objects {
                guard case .mapping(let pairs) = object else {
                    problems.append(.init(location: location(object), message: "each \(kindName) entry must be a mapping of fields"))
                    continue
                }
                var fields: ObjectFields = [:]
                let objectName = pairs.first { $0.key.string == "name" }?.value.string
                let label = "\(kindName) '\(objectName ?? "?")'"
                for (field, value) in pairs {
                    let fieldName = field.string ?? "?"
                    if fields[fieldName] != nil {
                        problems.append(.init(location: location(field), object: label, field: fieldName, message: "\(label): field \(fieldName) is given twice"))
                        continue
                    }
                    if case .sequence(let lines) = value, Self.linesFields.contains("\(kindName).\(fieldName)") {
                        // Zato writes a job's `extra` as a list of lines too.
                        let texts = lines.compactMap { line -> String? in
                            guard case .scalar(let scalar) = line else { return nil }
                            return scalar.string
                        }
                        if texts.count == lines.count {
                            fields[fieldName] = .string(texts.joined(separator: "\n"))
                        } else {
                            problems.append(.init(location: location(value), object: label, field: fieldName,
                                                  message: "\(label): \(fieldName) must be text or a list of lines"))
                        }
                        continue
                    }
                    switch scalarValue(value) {
                    case .success(let parsed): fields[fieldName] = parsed
                    case .failure(let reason):
                        problems.append(.init(location: location(value), object: label, field: fieldName, message: "\(label): \(fieldName) \(reason.message)"))
                    }
                }
                items.append(.init(kind: kind, fields: fields, location: location(object)))
            }
        }
        guard problems.isEmpty else { throw ImportError(problems: problems) }
        return items
    }

    private struct Refusal: Error { var message: String }

    /// Fields (`kind.field`) that may be written as a list of lines, read as one text.
    static let linesFields: Set<String> = ["scheduler.extra"]

    /// The deepest nesting an enmasse file may have (it needs 4).
    static let maximumNesting = 64

    /// Refuses, before the YAML composer sees it, text nested deeper than ``maximumNesting``
    /// (the composer recurses per level) and anchors or aliases (`&name`, `*name`: a reference
    /// can stand for a whole list, so a few lines could expand to billions of objects, and
    /// Yams hashes every mapping key whole).
    ///
    /// Deliberately simple, so that no trick can put it out of step with the YAML parser: it
    /// tracks no quotes and no comments, and treats every line break YAML knows (LF, CR, NEL,
    /// LS, PS) as one. `&` or `*` opening a token at a line start or after `-`, `:`, `?`, `,`,
    /// `[`, `{` or a tag, or right after `[`, `{`, `,` or `:`, is refused even inside quotes or
    /// comments, where it would be harmless: a clear error beats a guess.
    static func structureProblem(_ text: String, name: String) -> ImportError.Problem? {
        func nested(_ line: Int) -> ImportError.Problem {
            .init(location: "\(name):\(line)", message: "nested deeper than \(maximumNesting) levels; enmasse files need 4")
        }
        let opensNodeAfterSpace: Set<Unicode.Scalar> = ["-", ":", "?", ",", "[", "{"]
        let opensNodeAdjacent: Set<Unicode.Scalar> = [",", "[", "{", ":"]
        var line = 1, flow = 0, indentation = 0, leadingIndicators = 0
        var atLineStart = true, leading = true
        var previous: Unicode.Scalar? = nil
        var previousTokenFirst: Unicode.Scalar? = nil, previousTokenLast: Unicode.Scalar? = nil
        var tokenFirst: Unicode.Scalar? = nil
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}":
                if scalar != "\n" || previous != "\r" { line += 1 }
                atLineStart = true; leading = true; indentation = 0; leadingIndicators = 0
                previous = nil; previousTokenFirst = nil; previousTokenLast = nil; tokenFirst = nil
                continue
            case " ", "\t":
                if leading {
                    indentation += 1
                    if indentation > 4 * maximumNesting { return nested(line) }
                }
                if tokenFirst != nil {
                    previousTokenFirst = tokenFirst
                    previousTokenLast = previous
                    tokenFirst = nil
                }
                previous = scalar
                continue
            default:
                break
            }
            let startsToken = tokenFirst == nil
            if scalar == "&" || scalar == "*" {
                let afterSpace = startsToken && (atLineStart || previousTokenLast.map(opensNodeAfterSpace.contains) == true
                                                 || previousTokenFirst == "!")
                let adjacent = !startsToken && previous.map(opensNodeAdjacent.contains) == true
                if afterSpace || adjacent {
                    return .init(location: "\(name):\(line)",
                                 message: "anchors and aliases (&name, *name) are not accepted; write each object out")
                }
            }
            if startsToken { tokenFirst = scalar }
            if leading, scalar == "-" || scalar == "?" {
                leadingIndicators += 1
                if leadingIndicators > maximumNesting { return nested(line) }
            } else {
                leading = false
            }
            if scalar == "[" || scalar == "{" {
                flow += 1
                if flow > maximumNesting { return nested(line) }
            } else if scalar == "]" || scalar == "}" {
                flow = max(0, flow - 1)
            }
            atLineStart = false
            previous = scalar
        }
        return nil
    }

    private static func scalarValue(_ node: Node) -> Result<FieldValue, Refusal> {
        guard case .scalar(let scalar) = node else { return .failure(Refusal(message: "must be a string, integer, boolean or null, not a list or mapping")) }
        switch Tag.Name(rawValue: node.tag.rawValue) {
        case .null: return .success(.null)
        case .bool: return node.bool.map { .success(.bool($0)) } ?? .failure(Refusal(message: "is not a boolean"))
        case .int: return node.int.map { .success(.int($0)) } ?? .failure(Refusal(message: "= \(scalar.string) is not an integer in range"))
        case .float: return .failure(Refusal(message: "= \(scalar.string) must be a whole number"))
        default: return .success(.string(scalar.string))
        }
    }

    private static func syntaxProblem(_ error: YamlError, name: String) -> ImportError.Problem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return .init(location: "\(name):\(mark.line):\(mark.column)", message: "not valid YAML or JSON: \(problem)")
        default:
            return .init(location: name, message: "not valid YAML or JSON: \(error)")
        }
    }
}
