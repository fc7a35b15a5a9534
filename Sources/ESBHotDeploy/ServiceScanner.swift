import SwiftParser
import SwiftSyntax

/// Finds the types a dropped file deploys: every non-generic, file-scope type whose
/// declaration, or an extension in the same file, lists `Service` (or `ESBService.Service`).
public enum ServiceScanner {
    /// A deployable type and where it is declared.
    public struct Found: Sendable, Equatable {
        public var typeName: String
        public var line: Int
    }

    /// The deployable types of `source`, in declaration order.
    public static func scan(_ source: String) -> [Found] {
        let file = Parser.parse(source: source)
        let converter = SourceLocationConverter(fileName: "", tree: file)
        var declared: [String: (line: Int, generic: Bool, service: Bool)] = [:]
        var order: [String] = []
        var extended: Set<String> = []

        func visit(_ items: CodeBlockItemListSyntax) {
            for item in items {
                let decl = item.item
                if let ifConfig = decl.as(IfConfigDeclSyntax.self) {
                    // Both branches of a top-level #if: only one compiles, and listing a type
                    // that does not exist fails the build with a clear diagnostic.
                    for clause in ifConfig.clauses {
                        if case .statements(let statements) = clause.elements { visit(statements) }
                    }
                    continue
                }
                if let ext = decl.as(ExtensionDeclSyntax.self) {
                    if listsService(ext.inheritanceClause) {
                        extended.insert(ext.extendedType.trimmedDescription)
                    }
                    continue
                }
                guard let (name, generics, inheritance) = nominal(Syntax(decl)) else { continue }
                let line = converter.location(for: decl.positionAfterSkippingLeadingTrivia).line
                if declared[name] == nil { order.append(name) }
                declared[name] = (line, generics != nil, listsService(inheritance))
            }
        }
        visit(file.statements)
        return order.compactMap { name in
            guard let info = declared[name], !info.generic, info.service || extended.contains(name) else { return nil }
            return Found(typeName: name, line: info.line)
        }
    }

    /// The modules `source` imports at file scope (`import Foo`, `import struct Foo.Bar`,
    /// `@_exported import Foo`), first path component only, in order, without repeats.
    public static func imports(_ source: String) -> [String] {
        var modules: [String] = []
        func visit(_ items: CodeBlockItemListSyntax) {
            for item in items {
                if let ifConfig = item.item.as(IfConfigDeclSyntax.self) {
                    for clause in ifConfig.clauses {
                        if case .statements(let statements) = clause.elements { visit(statements) }
                    }
                } else if let decl = item.item.as(ImportDeclSyntax.self), let module = decl.path.first?.name.text,
                          !modules.contains(module) {
                    modules.append(module)
                }
            }
        }
        visit(Parser.parse(source: source).statements)
        return modules
    }

    private static func nominal(_ decl: Syntax) -> (String, GenericParameterClauseSyntax?, InheritanceClauseSyntax?)? {
        if let d = decl.as(StructDeclSyntax.self) { return (d.name.text, d.genericParameterClause, d.inheritanceClause) }
        if let d = decl.as(ClassDeclSyntax.self) { return (d.name.text, d.genericParameterClause, d.inheritanceClause) }
        if let d = decl.as(EnumDeclSyntax.self) { return (d.name.text, d.genericParameterClause, d.inheritanceClause) }
        if let d = decl.as(ActorDeclSyntax.self) { return (d.name.text, d.genericParameterClause, d.inheritanceClause) }
        return nil
    }

    private static func listsService(_ clause: InheritanceClauseSyntax?) -> Bool {
        guard let clause else { return false }
        return clause.inheritedTypes.contains { inherited in
            let name = inherited.type.trimmedDescription
            return name == "Service" || name == "ESBService.Service"
        }
    }
}
