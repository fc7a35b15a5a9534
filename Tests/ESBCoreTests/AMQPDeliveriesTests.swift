@testable import ESBCore
import ESBAMQP
import ESBService
import Foundation
import Testing

/// What a consuming service sees of a delivery, from what librabbitmq read.
@Suite struct AMQPDeliveriesTests {
    @Test func aCidIsTakenFromTheMessageOnlyWhenItIsOneAServerCouldHaveMade() {
        #expect(AMQPDeliveries.cid(["x-esb-cid": .string("a1B2.c_d-e")]) == "a1B2.c_d-e")
        for hostile in ["", "with space", "new\nline", "quote\"", String(repeating: "a", count: 65), "é"] {
            #expect(AMQPDeliveries.cid(["x-esb-cid": .string(hostile)]) == nil, "\(hostile)")
        }
        #expect(AMQPDeliveries.cid(["x-esb-cid": .int(5)]) == nil)
        #expect(AMQPDeliveries.cid([:]) == nil)
    }

    @Test func headersKeepTheirTypesAndStringOnesAlsoGoToRequestHeaders() {
        let received: [String: HeaderValue] = [
            "s": .string("text"), "n": .int(-3), "d": .double(2.5), "b": .bool(true), "t": .timestamp(1_700_000_000),
            "x": .bytes(Data([0, 1])), "v": .void, "x-death": .array([.table(["count": .int(1), "queue": .string("q")])]),
        ]
        let converted = received.mapValues(AMQPDeliveries.value)
        #expect(converted["t"] == .timestamp(Date(timeIntervalSince1970: 1_700_000_000)))
        #expect(converted["x"] == .bytes(Data([0, 1])))
        #expect(converted["v"] == .void)
        #expect(converted["n"] == .int(-3))
        #expect(converted["x-death"] == .array([.table(["count": .int(1), "queue": .string("q")])]))
        #expect(AMQPDeliveries.stringHeaders(received) == ["s": "text"])
    }

    @Test func datesBecomeWholeSecondsAndImpossibleOnesAreClamped() {
        #expect(AMQPDeliveries.seconds(Date(timeIntervalSince1970: 1_700_000_000.9)) == 1_700_000_000)
        #expect(AMQPDeliveries.seconds(Date(timeIntervalSince1970: -5)) == 0)
        #expect(AMQPDeliveries.seconds(Date(timeIntervalSince1970: .nan)) == 0)
        #expect(AMQPDeliveries.seconds(Date(timeIntervalSince1970: 1e300)) == .max)
    }

    @Test func aBodyIsCheckedAgainstTheChannelsDataFormat() {
        #expect(PayloadFormat.problem(in: Data("{\"a\":1}".utf8), format: "json") == nil)
        #expect(PayloadFormat.problem(in: Data("{bad".utf8), format: "json") != nil)
        #expect(PayloadFormat.problem(in: Data(), format: "json") != nil, "an empty body is no JSON document")
        #expect(PayloadFormat.problem(in: Data("<a/>".utf8), format: "xml") == nil)
        #expect(PayloadFormat.problem(in: Data("<a>".utf8), format: "xml") != nil)
        #expect(PayloadFormat.problem(in: Data("anything".utf8), format: "text") == nil)
    }

    @Test func aLoggedBodyIsCutAt64KiB() {
        let body = Data(repeating: 0x61, count: 70_000)
        let logged = AMQPDeliveries.loggable(body)
        #expect(logged.hasPrefix(String(repeating: "a", count: 65_536) + "…"))
        #expect(logged.contains("70000 bytes"))
    }
}
