import CESBRabbitMQ
@testable import ESBAMQP
import Foundation
import Glibc
import Synchronization
import Testing

/// The frames we encode for a publish are librabbitmq's, byte for byte: each message is
/// published through librabbitmq onto one end of a socket pair, and read off the other.
@Suite struct FrameEncoderTests {
    /// What librabbitmq 0.11 writes for `amqp_basic_publish` on channel `channel` (with its
    /// initial frame_max, 65536: a fresh handle cannot be tuned before login), and that frame_max.
    static func librabbitmqBytes(_ message: OutgoingMessage, channel: UInt16) throws -> (bytes: [UInt8], frameMax: Int) {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        // A reader drains the other end, so large bodies do not fill the socket buffer.
        let reader = pair[1]
        let received = Mutex<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while case let count = recv(reader, &chunk, chunk.count, 0), count > 0 {
                received.withLock { $0 += chunk[0..<count] }
            }
            close(reader)
            done.signal()
        }
        let state = try #require(amqp_new_connection())
        let socket = try #require(amqp_tcp_socket_new(state))
        amqp_tcp_socket_set_sockfd(socket, pair[0])
        let arena = CArena()
        var properties = arena.properties(message.properties)
        let status = message.body.withUnsafeBytes { body in
            amqp_basic_publish(state, channel, arena.bytes(message.exchange), arena.bytes(message.routingKey),
                               message.mandatory ? 1 : 0, 0, &properties, cesb_amqp_bytes(body.baseAddress, body.count))
        }
        shutdown(pair[0], Int32(SHUT_WR))
        done.wait()
        let frameMax = Int(amqp_get_frame_max(state))
        amqp_destroy_connection(state)  // closes pair[0]
        try #require(status == 0, "amqp_basic_publish: \(String(cString: amqp_error_string2(status)))")
        return (received.withLock { $0 }, frameMax)
    }

    static func ours(_ message: OutgoingMessage, channel: UInt16, frameMax: Int) throws -> [UInt8] {
        var encoder = FrameEncoder(channel: channel, frameMax: frameMax)
        try encoder.publish(exchange: message.exchange, routingKey: message.routingKey, mandatory: message.mandatory,
                            properties: message.properties, body: message.body)
        return encoder.bytes
    }

    static let messages: [OutgoingMessage] = [
        OutgoingMessage(exchange: "", routingKey: "orders", body: Data("hello".utf8)),
        OutgoingMessage(exchange: "ex.topic", routingKey: "a.b.c", body: Data(), mandatory: false),
        OutgoingMessage(exchange: "x", routingKey: "k", body: Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0) }),
                        properties: BasicProperties(contentType: "application/json", contentEncoding: "gzip", deliveryMode: 2,
                                                    priority: 7, correlationId: "corr-1", replyTo: "replies", expiration: 60_000,
                                                    messageId: "m-1", timestamp: 1_765_000_000, type: "order.created",
                                                    userId: "guest", appId: "esb",
                                                    headers: ["x-esb-cid": .string("cid-123"), "x-esb-msg-id": .int(42),
                                                              "ratio": .double(0.25), "ok": .bool(true), "neg": .int(-7),
                                                              "nested": .table(["a": .int(1), "b": .array([.string("z"), .bool(false)])]),
                                                              "list": .array([.int(1), .double(-1.5), .table([:])]),
                                                              "ünïcode": .string("ünïcode ✓")])),
        OutgoingMessage(exchange: "", routingKey: "typed", body: Data("t".utf8),
                        properties: BasicProperties(headers: ["at": .timestamp(1_700_000_000), "raw": .bytes(Data([0, 255, 7])),
                                                              "nothing": .void,
                                                              "inside": .array([.timestamp(1), .bytes(Data()), .void])])),
        OutgoingMessage(exchange: "big", routingKey: "q", body: Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })),
        OutgoingMessage(exchange: "", routingKey: "q", body: Data(repeating: 7, count: 65_528),
                        properties: BasicProperties(deliveryMode: 1, headers: ["empty": .string("")])),
    ]

    @Test(arguments: [UInt16(1), 7])
    func publishFramesAreLibrabbitmqsByteForByte(channel: UInt16) throws {
        for (index, message) in Self.messages.enumerated() {
            let (theirs, frameMax) = try Self.librabbitmqBytes(message, channel: channel)
            let ours = try Self.ours(message, channel: channel, frameMax: frameMax)
            #expect(!theirs.isEmpty)
            #expect(Self.difference(ours, theirs) == nil, "message \(index)")
        }
    }

    /// Headers read back as they were written, the kinds received headers (`x-death`) carry included.
    @Test func headerTablesDecodeToWhatWasEncoded() {
        let headers: [String: HeaderValue] = [
            "s": .string("ü"), "i": .int(-1 << 40), "d": .double(2.5), "b": .bool(false), "t": .timestamp(1_700_000_000),
            "x": .bytes(Data([1, 2])), "v": .void,
            "x-death": .array([.table(["count": .int(1), "queue": .string("q"), "time": .timestamp(5)])]),
        ]
        let arena = CArena()
        #expect(CArena.decode(arena.table(headers)) == headers)
    }

    /// A hostile message nesting headers thousands deep is not walked: deeper levels are not
    /// read, and the reader is told.
    @Test func headersNestedTooDeepAreCutAndReported() {
        var value = HeaderValue.string("bottom")
        for _ in 0..<200 { value = .array([value]) }
        let arena = CArena()
        var tooDeep = false
        let decoded = CArena.decode(arena.table(["deep": value]), tooDeep: &tooDeep)
        #expect(tooDeep)
        var depth = 0, current = decoded["deep"]
        while case .array(let inner)? = current { depth += 1; current = inner.first }
        #expect(depth == CArena.maximumDepth)
        #expect(current == .void)
        var shallow = false
        _ = CArena.decode(arena.table(["x-death": .array([.table(["count": .int(1)])])]), tooDeep: &shallow)
        #expect(!shallow)
    }

    @Test func manyPublishesGoIntoOneBufferBackToBack() throws {
        var encoder = FrameEncoder(channel: 1, frameMax: 65_536)
        var expected: [UInt8] = []
        for message in Self.messages {
            try encoder.publish(exchange: message.exchange, routingKey: message.routingKey, mandatory: message.mandatory,
                                properties: message.properties, body: message.body)
            let (bytes, frameMax) = try Self.librabbitmqBytes(message, channel: 1)
            try #require(frameMax == 65_536)
            expected += bytes
        }
        #expect(Self.difference(encoder.bytes, expected) == nil)
    }

    /// Where two encodings first differ, with a few bytes of each (nil when equal).
    static func difference(_ ours: [UInt8], _ theirs: [UInt8]) -> String? {
        guard ours != theirs else { return nil }
        let at = zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ours.count, theirs.count)
        return "\(ours.count) bytes against librabbitmq's \(theirs.count), first difference at \(at): "
            + "ours \(Array(ours[at..<min(at + 16, ours.count)])), theirs \(Array(theirs[at..<min(at + 16, theirs.count)]))"
    }

    @Test func whatAMQPCannotFrameIsRefusedAndLeavesTheBufferAsItWas() throws {
        var encoder = FrameEncoder(channel: 1, frameMax: 4096)
        try encoder.publish(exchange: "", routingKey: "q", mandatory: true, properties: .init(), body: Data("first".utf8))
        let before = encoder.bytes
        let long = String(repeating: "k", count: 256)
        #expect(throws: FrameEncoder.Refusal.self) {
            try encoder.publish(exchange: "", routingKey: long, mandatory: true, properties: .init(), body: Data())
        }
        #expect(throws: FrameEncoder.Refusal.self) {
            try encoder.publish(exchange: "", routingKey: "q", mandatory: true,
                                properties: BasicProperties(headers: ["nested": .table([long: .int(1)])]), body: Data())
        }
        let refusal = #expect(throws: FrameEncoder.Refusal.self) {
            try encoder.publish(exchange: "", routingKey: "q", mandatory: true,
                                properties: BasicProperties(headers: ["big": .string(String(repeating: "v", count: 5000))]), body: Data())
        }
        #expect(refusal?.reason.contains("more than 4096 bytes") == true)
        #expect(throws: FrameEncoder.Refusal.self) {
            try encoder.publish(exchange: "", routingKey: "q", mandatory: true,
                                properties: BasicProperties(headers: ["many": .array((0..<2000).map { .int(Int64($0)) })]), body: Data())
        }
        #expect(encoder.bytes == before)
    }
}
