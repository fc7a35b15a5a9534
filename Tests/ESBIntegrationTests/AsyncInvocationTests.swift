import ESBStore
import Foundation
import Testing

/// Durable async invocations and background invoke/retry in a real esbd (ODB on a real
/// SQLite file, services dropped into the pickup directory).
@Suite struct AsyncInvocationTests {
    @Test func asyncFallbackReturnsACidThenCallsBackOnceTheRetriesSucceed() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }

        let started = try await fixture.start(["mode": "fallback", "payload": "fa:2", "repeats": 3, "context": #"{"order":7}"#])
        let cid = try #require(started.cids.first)
        #expect(started.response == nil)
        let callback = try await fixture.callback(for: cid)
        #expect(callback["ok"] as? Bool == true)
        #expect(callback["attempts"] as? Int == 3, "the synchronous try, then two in the background")
        #expect(callback["context"] as? String == #"{"order":7}"#, "context comes back untouched")
        #expect(callback["response"] as? String == "call 3 via invoke-async")
        #expect(callback["error"] is NSNull)
        #expect(callback["source"] as? String == "async.start" && callback["target"] as? String == "async.target")
        #expect(callback["repeats"] as? Int == 3 && callback["interval_ms"] as? Int == 50)
        #expect((callback["orig_cid"] as? String)?.count == 24 && callback["orig_cid"] as? String != cid)
        #expect(callback["redelivered"] as? Bool == false)
        #expect((callback["req_ts_utc"] as? String)?.hasSuffix("Z") == true && (callback["resp_ts_utc"] as? String)?.hasSuffix("Z") == true)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await fixture.count("fa") == 3, "not called again after the success")
        #expect(fixture.callbacks().count == 1, "one callback")

        let direct = try await fixture.start(["mode": "fallback", "payload": "fb:0"])
        #expect(direct.cids.isEmpty && direct.response == "call 1 via invoke", "a first-try success answers at once")
    }

    @Test func invokeAsyncRetriesInTheBackgroundAndReportsEveryOutcome() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }

        let succeeding = try #require(try await fixture.start(["mode": "background", "payload": "ba:2", "repeats": 3]).cids.first)
        let exhausted = try #require(try await fixture.start(["mode": "background", "payload": "bb:10", "repeats": 2]).cids.first)
        let empty = try #require(try await fixture.start(["mode": "background", "payload": "bc:0:empty"]).cids.first)
        let plain = try #require(try await fixture.start(["mode": "plain", "payload": "bd:1"]).cids.first)

        let success = try await fixture.callback(for: succeeding)
        #expect(success["ok"] as? Bool == true && success["attempts"] as? Int == 3)
        #expect(success["response"] as? String == "call 3 via invoke-async")

        let failure = try await fixture.callback(for: exhausted)
        #expect(failure["ok"] as? Bool == false && failure["attempts"] as? Int == 3 && failure["response"] is NSNull)
        let error = try #require(failure["error"] as? String)
        #expect(error.hasPrefix("retry.exhausted: "))
        for attempt in 1...3 { #expect(error.contains("attempt \(attempt): esb.internal: failure number \(attempt)"), "\(error)") }
        #expect(try await fixture.count("bb") == 3, "repeats 2: three calls in all")

        let emptyCallback = try await fixture.callback(for: empty)
        #expect(emptyCallback["ok"] as? Bool == true && emptyCallback["response"] as? String == "", "an empty response is a success")
        #expect(emptyCallback["attempts"] as? Int == 1)

        let plainCallback = try await fixture.callback(for: plain)
        #expect(Set(plainCallback.keys) == ["cid", "ok", "service", "response", "error", "callback_id", "redelivered"])
        #expect(plainCallback["ok"] as? Bool == false && plainCallback["error"] as? String == "esb.internal: failure number 1")
        #expect(plainCallback["service"] as? String == "async.target")

        let status = try await fixture.waitForStatus(exhausted) { $0["callback_status"] as? String == "delivered" }
        #expect(status["status"] as? String == "failed" && status["attempts"] as? Int == 3)
        #expect(status["last_error"] as? String == "esb.internal: failure number 3")
        #expect((status["errors"] as? [String])?.count == 3)
        #expect(status["callback_deliveries"] as? Int == 1)
        let cli = try await fixture.server.esb(["async", succeeding])
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(cli.stdout.contains(#""status" : "done""#) && cli.stdout.contains(#""attempts" : 3"#), "\(cli.stdout)")
        #expect(try await fixture.status("0123456789abcdef01234567").status == 404)
        let unknown = try await fixture.server.esb(["async", "nope"])
        #expect(unknown.status != 0 && unknown.stderr.contains("no async invocation with cid 'nope'"))

        // Retention 0 days on SIGHUP: finished records are pruned at once.
        try fixture.server.writeConfig(sections: "[async]\nretention_days = 0\n")
        fixture.server.signal(SIGHUP)
        for cid in [succeeding, exhausted, empty, plain] {
            try await fixture.waitForStatus(cid) { $0["error"] != nil }
        }
    }

    @Test func unknownTargetsAndCallbacksAreRefusedAtOnce() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }
        try fixture.server.drop("async-bad.swift", """
            import ESBService
            struct Bad: Service {
                static let name = "async.bad"
                func handle(_ request: ServiceRequest, context: ServiceContext) async throws -> ServiceResponse {
                    do {
                        _ = try await context.patterns.invokeRetry.invokeAsync(request.text == "target" ? "no.such" : "async.target",
                            payload: "x:0", repeats: 1, interval: .seconds(1), callback: request.text == "target" ? nil : "no.callback")
                        return .text("accepted")
                    } catch let error as ServiceError {
                        return .text(error.description)
                    }
                }
            }
            """)
        try await fixture.server.waitForDeployment("async-bad.swift")
        #expect(try await fixture.server.invoke("async.bad", "target").text == "invoke.unknown_service: no service named 'no.such' is deployed")
        #expect(try await fixture.server.invoke("async.bad", "callback").text
                == "invoke.unknown_service: no callback service named 'no.callback' is deployed")
        #expect(try await fixture.count("x") == 0, "nothing ran")
    }

    @Test func pendingRetriesShowTheirStateAndSurviveAGracefulRestart() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }
        try fixture.setMarker("fail", present: true)
        let cid = try #require(try await fixture.start(["mode": "background", "payload": "marker", "repeats": 1000,
                                                        "interval_ms": 300]).cids.first)
        let pending = try await fixture.waitForStatus(cid) { ($0["attempts"] as? Int ?? 0) >= 1 && $0["status"] as? String == "pending" }
        #expect(pending["last_error"] as? String == "esb.internal: marker present")
        #expect(pending["next_run_at"] is String && pending["kind"] as? String == "invoke_retry")
        #expect(pending["callback_status"] as? String == "pending")
        let metrics = try await fixture.server.request("GET", "/metrics").text
        #expect(metrics.contains("esb_async_accepted_total") && metrics.contains("esb_async_attempts_total"))

        fixture.server.signal(SIGTERM)
        #expect(await fixture.server.waitForExit() == 0)
        let before = try #require(pending["attempts"] as? Int)
        try fixture.setMarker("fail", present: false)
        try await fixture.server.start()
        let callback = try await fixture.callback(for: cid)
        #expect(callback["ok"] as? Bool == true && (callback["attempts"] as? Int ?? 0) > before)
        let done = try await fixture.waitForStatus(cid) { $0["callback_status"] as? String == "delivered" }
        #expect(done["status"] as? String == "done" && done["callback_deliveries"] as? Int == 1)
        let gauges = try await fixture.server.request("GET", "/metrics").text
        #expect(gauges.contains("esb_async_pending") && gauges.contains("esb_async_done_total"))
    }
}

/// kill -9 of esbd with work pending (reliability target R10). Serialized: these are the heaviest.
@Suite(.serialized) struct AsyncCrashTests {
    @Test func killedWithAThousandPendingRetriesEveryOneCompletesAndCallsBackOnce() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }
        try fixture.setMarker("fail", present: true)
        let cids = try await fixture.start(["mode": "background", "payload": "marker", "repeats": 1000, "interval_ms": 200,
                                            "count": 1000]).cids
        #expect(cids.count == 1000 && Set(cids).count == 1000)
        try await fixture.waitForStatus(cids[999]) { ($0["attempts"] as? Int ?? 0) >= 1 }
        fixture.server.signal(SIGKILL)
        _ = await fixture.server.waitForExit()
        #expect(fixture.callbacks().isEmpty)

        try fixture.setMarker("fail", present: false)
        try await fixture.server.start()
        let callbacks = try await fixture.waitForCallbacks(1000, timeout: 180)
        try await Task.sleep(for: .seconds(1))
        let all = fixture.callbacks()
        #expect(all.count == 1000, "exactly one callback each")
        #expect(Set(all.compactMap { $0["cid"] as? String }) == Set(cids))
        #expect(all.allSatisfy { $0["ok"] as? Bool == true && $0["redelivered"] as? Bool == false })
        #expect(Set(callbacks.compactMap { $0["context"] as? String }) == Set((0..<1000).map(String.init)))
    }

    @Test func aCallbackRunningAtTheKillIsRedeliveredOnceMarkedRedelivered() async throws {
        let fixture = try await AsyncFixture()
        defer { Task { await fixture.server.stop() } }
        let cid = try #require(try await fixture.start(["mode": "background", "payload": "hold:0", "context": "hold"]).cids.first)
        let first = try await fixture.callback(for: cid)
        #expect(first["redelivered"] as? Bool == false)
        fixture.server.signal(SIGKILL)  // the callback service is waiting for DIR/release
        _ = await fixture.server.waitForExit()
        try fixture.setMarker("release", present: true)
        try await fixture.server.start()
        let both = try await fixture.waitForCallbacks(2) { $0["cid"] as? String == cid }
        #expect(both.filter { $0["redelivered"] as? Bool == true }.count == 1)
        #expect(Set(both.compactMap { $0["callback_id"] as? String }).count == 1, "the same callback_id")
        let status = try await fixture.waitForStatus(cid) { $0["callback_status"] as? String == "delivered" }
        #expect(status["callback_deliveries"] as? Int == 2 && status["interruptions"] as? Int == 1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(fixture.callbacks().count == 2, "and not a third time")
    }
}
