import ESBCore
import ESBHotDeploy
import Foundation
import Testing
@_spi(ESBHost) import ESBService

/// The plugin arrangement: a service file compiled by the real swiftc against the one
/// shared libESBService.so, loaded into this host, cast to the host's own types, called.
@Suite struct PluginSharingTests {
    struct NoHost: ServiceHost {}

    @Test func compiledServiceLoadsIntoTheHostAndAnswers() async throws {
        let sdk = try SDKLocation.current()
        #expect(FileManager.default.fileExists(atPath: sdk.moduleDirectory + "/ESBService.swiftmodule"))
        let source = PluginFixture.serviceSource(typeName: "Hello", serviceName: "test.hello",
                                                 body: #".text("hello \(request.text) via \(request.channel)")"#)
        let fixture = try await PluginFixture.compile(source, moduleName: "Hello_\(UUID().uuidString.prefix(8).lowercased())")
        #expect(fixture.output.succeeded, "\(fixture.output.diagnostics)")

        let plugin = try PluginLoader.load(path: fixture.library)
        #expect(plugin.services.map { $0.name } == ["test.hello"])
        let service = plugin.services[0].init()
        let context = ServiceContext(cid: "c1", serviceName: "test.hello",
                                     logger: ServiceLogger { _, _ in }, host: NoHost())
        let response = try await service.handle(ServiceRequest(payload: "world"), context: context)
        #expect(response.text == "hello world via invoke")
        #expect(response.contentType.hasPrefix("text/plain"))
    }

    @Test func compileErrorsComeBackWithFileLineAndColumn() async throws {
        let fixture = try await PluginFixture.compile("import ESBService\nlet x: Int = \"no\"\n", moduleName: "Broken")
        #expect(!fixture.output.succeeded)
        #expect(fixture.output.diagnostics.contains("Broken.swift:2:14: error"))
    }

    @Test func aLibraryWithoutTheEntryPointIsRefusedByName() async throws {
        let fixture = try await PluginFixture.compile("public func nothing() {}\n", moduleName: "Plain")
        #expect(fixture.output.succeeded)
        #expect(throws: PluginLoadError.self) { try PluginLoader.load(path: fixture.library) }
    }

    /// A library built against an older SDK (ABI 1, before `request.amqp`) is refused with
    /// a message saying to rebuild it, not loaded to crash on a changed layout.
    @Test func aLibraryBuiltForAnOlderPluginABIIsRefusedWithWhatToDo() async throws {
        let source = """
            import ESBService
            struct Old: Service {
                static let name = "old.abi"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .text("old") }
            }
            @_cdecl("esb_plugin_main")
            public func esbPluginMain() -> UnsafeMutableRawPointer {
                ServicePlugin(services: [Old.self], abiVersion: 1).retainedPointer()
            }
            """
        let fixture = try await PluginFixture.compile(source, moduleName: "OldABI")
        #expect(fixture.output.succeeded, "\(fixture.output.diagnostics)")
        do {
            _ = try PluginLoader.load(path: fixture.library)
            Issue.record("an ABI 1 plugin was loaded")
        } catch {
            #expect(error.reason.contains("plugin ABI 1") && error.reason.contains("rebuild"), "\(error)")
        }
    }
}
