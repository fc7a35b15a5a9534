import ESBCore
import ESBHotDeploy
import Foundation

/// Writes a Swift source into a fresh directory and compiles it as a service library.
struct PluginFixture {
    let directory: String
    let library: String
    let output: SwiftCompiler.Output

    /// A one-service plugin with the entry point esbd will generate for authors.
    static func serviceSource(typeName: String, serviceName: String, body: String) -> String {
        """
        import ESBService

        struct \(typeName): Service {
            static let name = "\(serviceName)"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                \(body)
            }
        }

        @_cdecl("esb_plugin_main")
        public func esbPluginMain() -> UnsafeMutableRawPointer {
            ServicePlugin(services: [\(typeName).self]).retainedPointer()
        }
        """
    }

    /// Compiles `source` as module `moduleName` against `sdk` (default: the SDK this process uses).
    static func compile(_ source: String, moduleName: String, sdk: SDKLocation? = nil,
                        swiftc: String = "swiftc", in directory: String? = nil) async throws -> PluginFixture {
        let directory = directory ?? TestEnvironment.temporaryDirectory("plugin")
        let sourcePath = "\(directory)/\(moduleName).swift"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let compiler = SwiftCompiler(swiftc: swiftc, sdk: try sdk ?? SDKLocation.current(),
                                     moduleCachePath: directory + "/module-cache")
        let library = "\(directory)/lib\(moduleName).so"
        let output = try await compiler.compileLibrary(sources: [sourcePath], moduleName: moduleName, output: library)
        return PluginFixture(directory: directory, library: library, output: output)
    }
}
