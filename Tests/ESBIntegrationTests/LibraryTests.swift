import Foundation
import Testing

/// Shared code for services: library modules from `pickup/lib/NAME/`,
/// rebuilt with their dependents when they change, and prebuilt modules on
/// `[hot_deploy] extra_module_paths`. Real swiftc, the built esbd.
@Suite struct LibraryTests {
    static func pricing(factor: Int) -> String {
        """
        /// Prices for every service that imports Pricing.
        public enum Pricing {
            public static func price(_ amount: Int) -> Int { amount * \(factor) }
        }
        """
    }

    static let format = """
        public func format(_ amount: Int) -> String { "EUR " + String(amount) }
        """

    static func service(_ name: String, body: String) -> String {
        """
        import ESBService
        import Pricing

        struct Priced: Service {
            static let name = "\(name)"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                \(body)
            }
        }
        """
    }

    /// Polls `service` until it answers `expected`.
    func waitForAnswer(_ server: TestServer, _ service: String, _ payload: String, _ expected: String) async throws {
        let deadline = Date().addingTimeInterval(90)
        var last = ""
        while Date() < deadline {
            last = try await server.invoke(service, payload).text
            if last == expected { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("\(service) answered '\(last)', not '\(expected)'; log:\n\(server.log.suffix(4000))")
    }

    @Test func twoServicesShareALibraryThatChangesLiveSurvivesBreakageAndRestarts() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.dropLibraryFile("Pricing", "Pricing.swift", Self.pricing(factor: 2))
        try server.dropLibraryFile("Pricing", "Format.swift", Self.format)
        try await server.waitForDeployment("lib/Pricing")
        try server.drop("a.swift", Self.service("lib.a", body: ".text(format(Pricing.price(Int(request.text) ?? 0)))"))
        try server.drop("b.swift", Self.service("lib.b", body: #".text("b:" + String(Pricing.price(10)))"#))
        try await server.waitForDeployment("a.swift")
        try await server.waitForDeployment("b.swift")
        #expect(try await server.invoke("lib.a", "5").text == "EUR 10")
        #expect(try await server.invoke("lib.b").text == "b:20")

        let library = try #require(try await server.deployment("lib/Pricing"))
        #expect(library["kind"] as? String == "library")
        #expect(Set(library["dependents"] as? [String] ?? []) == ["a.swift", "b.swift"])
        #expect(try await server.deployment("a.swift")?["imports"] as? [String] == ["Pricing"])
        let listing = try await server.esb(["deployments"])
        #expect(listing.stdout.contains("lib/Pricing") && listing.stdout.contains("library"), "\(listing.stdout)")

        // A change of the library reaches both services, without a restart.
        try server.dropLibraryFile("Pricing", "Pricing.swift", Self.pricing(factor: 3))
        try await waitForAnswer(server, "lib.b", "", "b:30")
        try await waitForAnswer(server, "lib.a", "5", "EUR 15")

        // A broken library is reported with file:line; both services keep their versions.
        try server.dropLibraryFile("Pricing", "Pricing.swift", "public enum Pricing { public static func price(_ amount: Int) -> Int { amount * } }")
        let failed = try await server.waitForDeployment("lib/Pricing", status: "failed")
        let error = failed["error"] as? String ?? ""
        #expect(error.contains("lib/Pricing/Pricing.swift:1:"), "\(error)")
        #expect(try await server.invoke("lib.a", "5").text == "EUR 15")
        #expect(try await server.invoke("lib.b").text == "b:30")

        // A restart restores the library and both services from cached artifacts.
        await server.stop()
        try await server.start()
        #expect(server.log.contains("esb.cached=3"), "library and services restored without compiling:\n\(server.log.suffix(3000))")
        #expect(try await server.invoke("lib.a", "5").text == "EUR 15")
        #expect(try await server.invoke("lib.b").text == "b:30")
    }

    @Test func librariesImportLibrariesCyclesAreNamedAndMissingModulesAreExplained() async throws {
        let server = try TestServer()
        try await server.start()
        defer { Task { await server.stop() } }
        try server.dropLibraryFile("Money", "Money.swift", """
            public struct Money: Sendable { public var cents: Int; public init(cents: Int) { self.cents = cents } }
            """)
        try await server.waitForDeployment("lib/Money")
        try server.dropLibraryFile("Shop", "Shop.swift", """
            import Money
            public func total(_ items: [Int]) -> Money { Money(cents: items.reduce(0, +)) }
            """)
        try await server.waitForDeployment("lib/Shop")
        #expect(try await server.deployment("lib/Shop")?["imports"] as? [String] == ["Money"])
        try server.drop("shop.swift", """
            import ESBService
            import Shop
            struct Till: Service {
                static let name = "lib.till"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    .text(String(total([150, 250]).cents))
                }
            }
            """)
        try await server.waitForDeployment("shop.swift")
        #expect(try await server.invoke("lib.till").text == "400")

        try server.dropLibraryFile("Money", "Money.swift", """
            import Shop
            public struct Money: Sendable { public var cents: Int; public init(cents: Int) { self.cents = cents } }
            """)
        let cycle = try await server.waitForDeployment("lib/Money", status: "failed")
        #expect((cycle["error"] as? String)?.contains("libraries import each other in a cycle: Money → Shop → Money") == true,
                "\(cycle["error"] ?? "")")
        #expect(try await server.invoke("lib.till").text == "400", "the cycle changed nothing")

        try server.drop("nope.swift", """
            import ESBService
            import Nope
            struct Nope: Service {
                static let name = "lib.nope"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse { .empty }
            }
            """)
        let missing = try await server.waitForDeployment("nope.swift", status: "failed")
        let error = missing["error"] as? String ?? ""
        #expect(error.contains("nope.swift:2:") && error.contains("no such module 'Nope'"), "\(error)")
        #expect(error.contains("hint: no library 'Nope' in the pickup directory's lib/"), "\(error)")
    }

    @Test func aPrebuiltModuleOnTheExtraPathsIsImportable() async throws {
        let modules = TestEnvironment.temporaryDirectory("prebuilt")
        try """
            public func greeting(_ name: String) -> String { "hello, " + name }
            """.write(toFile: modules + "/Greeter.swift", atomically: true, encoding: .utf8)
        let built = try await runCommand("/usr/bin/env", ["swiftc", "-emit-library", "-emit-module", "-parse-as-library",
                                                           "-module-name", "Greeter", "-emit-module-path", modules + "/Greeter.swiftmodule",
                                                           "-o", modules + "/libGreeter.so", modules + "/Greeter.swift"])
        #expect(built.status == 0, "\(built.stderr)")
        let server = try TestServer(sections: "[hot_deploy]\nextra_module_paths = \(modules)\n")
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("greet.swift", """
            import ESBService
            import Greeter
            struct Greet: Service {
                static let name = "lib.greet"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    .text(greeting(request.text))
                }
            }
            """)
        try await server.waitForDeployment("greet.swift")
        #expect(try await server.invoke("lib.greet", "world").text == "hello, world")
    }
}
