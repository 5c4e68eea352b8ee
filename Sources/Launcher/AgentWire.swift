import PMI

/// The control protocol between swiftrun and the agents it starts on other hosts: PMI-style
/// lines (`cmd=NAME key=value ...`) over TCP, with every value percent-encoded so arguments,
/// environment values and output bytes travel intact.
///
/// swiftrun -> agent: `app`, `rank`, `env` (the job), `go`; then `pmi` (a reply for a rank),
/// `barrier_out`, `stdin`, `stdin_eof`, `kill`. Agent -> swiftrun: `hello` (first, with the
/// job's secret), `started`, `pmi` (a rank's message), `barrier`, `out`, `exit` (`pmi=1` when
/// the rank had spoken PMI), `cutoff` (a rank broke a PMI limit, `why` says which), `done`.
enum AgentWire {
    /// The longest line on the agent link. A host's `barrier` carries its ranks' puts, each
    /// percent-encoded twice (at most five times its cost against `PMIServer.putBytesMax`), a
    /// `barrier_out` every put of a round, encoded once; the rest is room for a host's rank list.
    static let lineMax = 6 * PMIServer.putBytesMax
    /// What swiftrun holds for an agent that does not read: beyond it the agent is given up.
    static let outboxMax = 2 * lineMax

    /// The bytes that travel as they are, as a table indexed by byte (one lookup a byte: a
    /// barrier carries a whole host's puts).
    static let plain: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/:,+@-".utf8 { t[Int(b)] = true }
        return t
    }()

    static func encode(_ s: String) -> String { encode(Array(s.utf8)) }

    /// Linear, one table lookup a byte, straight into the string's storage (a barrier line
    /// carries a whole host's puts).
    static func encode(_ bytes: [UInt8]) -> String {
        guard !bytes.isEmpty else { return "%" } // "%" alone: the empty value
        let hex: (UInt8) -> UInt8 = { $0 < 10 ? 48 + $0 : 55 + $0 }
        return bytes.withUnsafeBufferPointer { src in
            plain.withUnsafeBufferPointer { table in
                String(unsafeUninitializedCapacity: src.count * 3) { out in
                    var o = 0, k = 0
                    while k < src.count {
                        let b = src[k]
                        if table[Int(b)] {
                            out[o] = b
                            o += 1
                        } else {
                            out[o] = 37
                            out[o + 1] = hex(b >> 4)
                            out[o + 2] = hex(b & 15)
                            o += 3
                        }
                        k += 1
                    }
                    return o
                }
            }
        }
    }

    static func decodeBytes(_ s: String) -> [UInt8] {
        if s == "%" { return [] }
        let u = Array(s.utf8)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 65...70: c - 55
            case 97...102: c - 87
            default: nil
            }
        }
        return u.withUnsafeBufferPointer { src in
            [UInt8](unsafeUninitializedCapacity: src.count) { out, count in
                var i = 0, o = 0
                while i < src.count {
                    if src[i] == 37, i + 2 < src.count, let h = nibble(src[i + 1]), let l = nibble(src[i + 2]) {
                        out[o] = h << 4 | l
                        i += 3
                    } else {
                        out[o] = src[i]
                        i += 1
                    }
                    o += 1
                }
                count = o
            }
        }
    }

    static func decode(_ s: String) -> String { String(decoding: decodeBytes(s), as: UTF8.self) }

    /// A rank's output, in pieces of at most 64 KiB each.
    static func sendOutput(_ bytes: [UInt8], rank: Int, fd: Int, over channel: PMILineChannel) {
        var off = 0
        while off < bytes.count {
            let piece = Array(bytes[off..<min(off + 65536, bytes.count)])
            try? channel.send(PMIMessage("out", [("rank", String(rank)), ("fd", String(fd)), ("data", encode(piece))]))
            off += piece.count
        }
    }

    static func message(_ cmd: String, _ fields: [(String, String)]) -> PMIMessage {
        PMIMessage(cmd, fields.map { ($0.0, encode($0.1)) })
    }

    static func values(_ m: PMIMessage, _ key: String) -> [String] {
        m.fields.filter { $0.key == key }.map { decode($0.value) }
    }

    static func value(_ m: PMIMessage, _ key: String) -> String? { m[key].map(decode) }
}
