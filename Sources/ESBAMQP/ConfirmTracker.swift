/// The publisher-confirm bookkeeping of one channel: a pure state machine, no I/O.
///
/// The broker numbers publishes on a confirm-mode channel 1, 2, 3… and answers each with
/// Basic.Ack or Basic.Nack (either may cover every tag up to its own, `multiple`). A
/// mandatory message it cannot route comes back as Basic.Return *before* its ack; the
/// return carries no delivery tag, so the publisher stamps the tag into a header and the
/// return is matched by that.
struct ConfirmTracker<Token> {
    enum Outcome: Equatable {
        case confirmed
        case returned(code: Int, text: String)
        case nacked
    }

    private struct Entry {
        var token: Token
        var deadline: UInt64
    }

    /// The tag the next publish gets.
    private(set) var nextTag: UInt64 = 1
    private var lowest: UInt64 = 1
    private var entries: [UInt64: Entry] = [:]
    private var returns: [UInt64: (code: Int, text: String)] = [:]

    /// Messages awaiting a confirm.
    var count: Int { entries.count }

    /// The deadline of the oldest unconfirmed message: tags grow with time, so it is the first.
    var earliestDeadline: UInt64? {
        var tag = lowest
        while tag < nextTag {
            if let entry = entries[tag] { return entry.deadline }
            tag += 1
        }
        return nil
    }

    /// Records a publish; returns its delivery tag.
    mutating func published(_ token: Token, deadline: UInt64) -> UInt64 {
        let tag = nextTag
        entries[tag] = Entry(token: token, deadline: deadline)
        nextTag += 1
        return tag
    }

    /// Takes back the most recent publish, which was never written (not a byte of it).
    mutating func withdrawLast() {
        guard nextTag > lowest else { return }
        nextTag -= 1
        entries[nextTag] = nil
        returns[nextTag] = nil
    }

    /// A Basic.Return for the message stamped with `tag`; its ack follows.
    mutating func returned(tag: UInt64, code: Int, text: String) {
        guard entries[tag] != nil else { return }
        returns[tag] = (code, text)
    }

    /// A Basic.Ack: confirmed, or returned when a return came first.
    mutating func acked(tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        settle(tag: tag, multiple: multiple, nacked: false)
    }

    /// A Basic.Nack.
    mutating func nacked(tag: UInt64, multiple: Bool) -> [(Token, Outcome)] {
        settle(tag: tag, multiple: multiple, nacked: true)
    }

    /// Forgets everything (the channel or connection is gone); returns the unsettled tokens
    /// oldest first. The next channel numbers from 1 again.
    mutating func reset() -> [Token] {
        let tokens = entries.sorted { $0.key < $1.key }.map(\.value.token)
        entries.removeAll()
        returns.removeAll()
        nextTag = 1
        lowest = 1
        return tokens
    }

    private mutating func settle(tag: UInt64, multiple: Bool, nacked: Bool) -> [(Token, Outcome)] {
        var settled: [(Token, Outcome)] = []
        func outcome(_ tag: UInt64) -> Outcome {
            let returned = returns.removeValue(forKey: tag)
            if nacked { return .nacked }
            return returned.map { .returned(code: $0.code, text: $0.text) } ?? .confirmed
        }
        if multiple {
            var current = lowest
            while current <= tag && current < nextTag {
                if let entry = entries.removeValue(forKey: current) { settled.append((entry.token, outcome(current))) }
                current += 1
            }
        } else if let entry = entries.removeValue(forKey: tag) {
            settled.append((entry.token, outcome(tag)))
        }
        while lowest < nextTag && entries[lowest] == nil { lowest += 1 }
        return settled
    }
}
