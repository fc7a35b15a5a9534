import Foundation
import Testing

/// A real esbd with services for durable async work dropped in, and the callbacks they
/// received read back from files (one file per delivery, so nothing is overwritten).
struct AsyncFixture {
    let server: TestServer
    let directory: String

    /// Services: `async.start` starts work as its JSON order says; `async.target` fails while
    /// `DIR/fail` exists (payload `marker`; taking 0.3 s while `DIR/slow` exists) or for its first N calls per key (payload `KEY:N`,
    /// `KEY:N:empty` answers empty); `async.callback` writes each delivery to `DIR/callbacks/`
    /// and, for context `hold`, waits for `DIR/release` before returning; `async.count` answers
    /// how often a key was called.
    static func services(directory: String) -> String {
        """
        import ESBService
        import Foundation
        import Synchronization

        let directory = "\(directory)"

        struct Target: Service {
            static let name = "async.target"
            static let calls = Mutex<[String: Int]>([:])
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let parts = request.text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
                let call = Target.calls.withLock { calls -> Int in
                    calls[parts[0], default: 0] += 1
                    return calls[parts[0]]!
                }
                if parts[0] == "marker" {
                    if FileManager.default.fileExists(atPath: directory + "/slow") {
                        try await Task.sleep(for: .milliseconds(300))
                    }
                    if FileManager.default.fileExists(atPath: directory + "/fail") {
                        throw ServiceError(.internalError, "marker present")
                    }
                    return .text("fine")
                }
                if call <= Int(parts[1])! { throw ServiceError(.internalError, "failure number \\(call)") }
                return parts.count > 2 ? .empty : .text("call \\(call) via \\(request.channel)")
            }
        }

        struct Count: Service {
            static let name = "async.count"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                .text(String(Target.calls.withLock { $0[request.text] ?? 0 }))
            }
        }

        struct Callback: Service {
            static let name = "async.callback"
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                try request.payload.write(to: URL(fileURLWithPath: directory + "/callbacks/" + UUID().uuidString + ".json"))
                let object = try JSONSerialization.jsonObject(with: request.payload) as? [String: Any]
                if object?["context"] as? String == "hold" {
                    while !FileManager.default.fileExists(atPath: directory + "/release") {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                return .empty
            }
        }

        struct Start: Service {
            static let name = "async.start"
            struct Order: Decodable {
                var mode: String
                var payload: String
                var repeats: Int?
                var interval_ms: Int?
                var context: String?
                var count: Int?
            }
            struct Answer: Encodable {
                var cids: [String] = []
                var response: String?
            }
            func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                let order = try request.decode(Order.self)
                let retry = context.patterns.invokeRetry
                let interval = Duration.milliseconds(order.interval_ms ?? 50)
                let repeats = order.repeats ?? 3
                var answer = Answer()
                switch order.mode {
                case "fallback":
                    switch try await retry.invoke("async.target", payload: order.payload, repeats: repeats, interval: interval,
                                                  asyncFallback: true, callback: "async.callback", context: order.context) {
                    case .response(let response): answer.response = response.text
                    case .pending(let cid): answer.cids = [cid]
                    }
                case "plain":
                    answer.cids = [try await context.invokeAsync("async.target", payload: order.payload, callback: "async.callback")]
                default:
                    answer.cids = try await withThrowingTaskGroup(of: String.self) { group in
                        var cids: [String] = []
                        for index in 0..<(order.count ?? 1) {
                            if index >= 50, let cid = try await group.next() { cids.append(cid) }
                            group.addTask {
                                try await retry.invokeAsync("async.target", payload: order.payload, repeats: repeats, interval: interval,
                                                            callback: "async.callback", context: order.context ?? String(index))
                            }
                        }
                        for try await cid in group { cids.append(cid) }
                        return cids
                    }
                }
                return try .json(answer)
            }
        }
        """
    }

    /// Starts esbd (with `sections` in server.conf) and deploys the services.
    init(sections: String = "") async throws {
        server = try TestServer(sections: sections)
        directory = server.directory + "/async"
        try FileManager.default.createDirectory(atPath: directory + "/callbacks", withIntermediateDirectories: true)
        try await server.start()
        try server.drop("async.swift", Self.services(directory: directory))
        try await server.waitForDeployment("async.swift")
    }

    /// Sends an order to `async.start`; returns the cids and the synchronous response, if any.
    func start(_ order: [String: Any]) async throws -> (cids: [String], response: String?) {
        let reply = try await server.request("POST", "/esb/api/invoke/async.start",
                                             body: try JSONSerialization.data(withJSONObject: order), credentials: server.admin)
        guard reply.status == 200, let json = reply.json else { throw TestFailure("async.start: \(reply.status) \(reply.text)") }
        return ((json["cids"] as? [String]) ?? [], json["response"] as? String)
    }

    func count(_ key: String) async throws -> Int {
        Int(try await server.invoke("async.count", key).text) ?? -1
    }

    /// Every callback delivered so far.
    func callbacks() -> [[String: Any]] {
        let folder = directory + "/callbacks"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let data = FileManager.default.contents(atPath: folder + "/" + name) else { return nil }
            return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        }
    }

    /// Waits until `count` callbacks matching `filter` arrived, and returns them.
    @discardableResult
    func waitForCallbacks(_ count: Int, timeout: Double = 180,
                          where filter: ([String: Any]) -> Bool = { _ in true }) async throws -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let found = callbacks().filter(filter)
            if found.count >= count { return found }
            if Date() > deadline { throw TestFailure("\(found.count) of \(count) callbacks arrived in \(timeout) s; log:\n\(server.log.suffix(3000))") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The callback for `cid`, once it arrived.
    func callback(for cid: String) async throws -> [String: Any] {
        try await waitForCallbacks(1) { $0["cid"] as? String == cid }[0]
    }

    /// `GET /esb/api/async/{cid}`.
    func status(_ cid: String) async throws -> TestServer.Reply {
        try await server.request("GET", "/esb/api/async/\(cid)", credentials: server.admin)
    }

    /// Polls the status of `cid` until `condition` holds.
    @discardableResult
    func waitForStatus(_ cid: String, timeout: Double = 120, _ condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let json = try await status(cid).json ?? [:]
            if condition(json) { return json }
            if Date() > deadline { throw TestFailure("async \(cid) never reached the expected state; last: \(json)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func setMarker(_ name: String, present: Bool) throws {
        let path = directory + "/" + name
        if present {
            _ = FileManager.default.createFile(atPath: path, contents: Data())
        } else {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
