import Foundation
import Testing
import ESBCore
@_spi(ESBHost) import ESBService

/// The plugin arrangement: a service file compiled by the real swiftc against the one
/// shared libESBService.so, loaded into this host, cast to the host's own types, called.
@Suite struct PluginSharingTests {
    struct NoHost: ServiceHost {}

    @Test func compiledServiceLoadsIntoTheHostAndAnswers() async throws {
        let directory = TestEnvironment.temporaryDirectory("plugin")
        let source = directory + "/Hello.swift"
        try """
            import ESBService

            struct Hello: Service {
                static let name = "test.hello"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    .text("hello \\(request.text) via \\(request.channel)")
                }
            }

            @_cdecl("esb_plugin_main")
            public func esbPluginMain() -> UnsafeMutableRawPointer {
                ServicePlugin(services: [Hello.self]).retainedPointer()
            }
            """.write(toFile: source, atomically: true, encoding: .utf8)

        let sdk = try SDKLocation.current()
        #expect(FileManager.default.fileExists(atPath: sdk.moduleDirectory + "/ESBService.swiftmodule"))
        let compiler = SwiftCompiler(swiftc: "swiftc", sdk: sdk, moduleCachePath: directory + "/module-cache")
        let library = directory + "/libHello.so"
        let output = try await compiler.compileLibrary(
            sources: [source], moduleName: "Hello_\(UUID().uuidString.prefix(8).lowercased())", output: library)
        #expect(output.succeeded, "\(output.diagnostics)")

        let plugin = try PluginLoader.load(path: library)
        #expect(plugin.services.map { $0.name } == ["test.hello"])
        let service = plugin.services[0].init()
        let context = ServiceContext(cid: "c1", serviceName: "test.hello",
                                     logger: ServiceLogger { _, _ in }, host: NoHost())
        let response = try await service.handle(ServiceRequest(payload: "world"), context: context)
        #expect(response.text == "hello world via invoke")
        #expect(response.contentType.hasPrefix("text/plain"))
    }

    @Test func compileErrorsComeBackWithFileLineAndColumn() async throws {
        let directory = TestEnvironment.temporaryDirectory("plugin")
        let source = directory + "/Broken.swift"
        try "import ESBService\nlet x: Int = \"no\"\n".write(toFile: source, atomically: true, encoding: .utf8)
        let compiler = SwiftCompiler(swiftc: "swiftc", sdk: try SDKLocation.current(),
                                     moduleCachePath: directory + "/module-cache")
        let output = try await compiler.compileLibrary(sources: [source], moduleName: "Broken", output: directory + "/libBroken.so")
        #expect(!output.succeeded)
        #expect(output.diagnostics.contains("Broken.swift:2:14: error"))
    }

    @Test func aLibraryWithoutTheEntryPointIsRefusedByName() async throws {
        let directory = TestEnvironment.temporaryDirectory("plugin")
        let source = directory + "/Plain.swift"
        try "public func nothing() {}\n".write(toFile: source, atomically: true, encoding: .utf8)
        let compiler = SwiftCompiler(swiftc: "swiftc", sdk: try SDKLocation.current(),
                                     moduleCachePath: directory + "/module-cache")
        let library = directory + "/libPlain.so"
        #expect(try await compiler.compileLibrary(sources: [source], moduleName: "Plain", output: library).succeeded)
        #expect(throws: PluginLoadError.self) { try PluginLoader.load(path: library) }
    }
}
