import Foundation
import Testing

/// The dashboard in a real headless Chromium (scripts/testkit/dashboard_check.py, selenium):
/// sign-in, forms that create and edit objects the API then sees, a confirmed test publish,
/// a failed deployment's diagnostics, and refusals without a session or CSRF token.
/// With ESB_SCREENSHOT_DIR set, it keeps screenshots of the main pages there.
@Suite struct DashboardTests {
    @Test func aUserSignsInCreatesEditsAndPublishesAndForgedPostsAreRefused() async throws {
        let queue = AMQPPeer.uniqueName("dashboard")
        try await AMQPPeer.declare(queue)
        defer { Task { await AMQPPeer.delete(queue) } }
        let server = try TestServer(name: "dashboard-demo")
        try await server.start()
        defer { Task { await server.stop() } }
        try server.drop("dash-broken.swift", """
            import ESBService
            struct Broken: Service {
                static let name = "dash.broken"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    return .text(undefinedThing)
                }
            }
            """)
        _ = try await server.waitForDeployment("dash-broken.swift", status: "failed")

        var arguments = [TestEnvironment.packageRoot + "/scripts/testkit/dashboard_check.py",
                         "--url", "http://127.0.0.1:\(server.port)", "--password", server.password,
                         "--broker-host", AMQPPeer.host, "--broker-port", String(AMQPPeer.port),
                         "--queue", queue, "--failed-unit", "dash-broken.swift"]
        if let screenshots = ProcessInfo.processInfo.environment["ESB_SCREENSHOT_DIR"] { arguments += ["--screenshots", screenshots] }
        let result = try await runCommand("/usr/bin/env", ["python3"] + arguments)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("all dashboard checks passed"))

        let arrived = try await AMQPPeer.get(queue)
        #expect(arrived.map(\.body) == ["published from the dashboard"], "the test publish reached the broker once")
    }
}
