import PMI

/// The control protocol between swiftrun and the agents it starts on other hosts: PMI-style
/// lines (`cmd=NAME key=value ...`) over TCP, with every value percent-encoded so arguments,
/// environment values and output bytes travel intact.
///
/// swiftrun -> agent: `app`, `rank`, `env` (the job), `go`; then `pmi` (a reply for a rank),
/// `stdin`, `stdin_eof`, `kill`. Agent -> swiftrun: `hello` (first, with the job's secret),
/// `started`, `pmi` (a rank's message), `out`, `exit`, `done`.
enum AgentWire {
    static let plain: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~/:,+@-".utf8))

    static func encode(_ s: String) -> String { encode(Array(s.utf8)) }

    static func encode(_ bytes: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(bytes.count)
        let hex = Array("0123456789ABCDEF".utf8)
        var scalars: [UInt8] = []
        scalars.reserveCapacity(bytes.count * 3)
        for b in bytes {
            if plain.contains(b) { scalars.append(b) } else { scalars += [37, hex[Int(b >> 4)], hex[Int(b & 15)]] }
        }
        out = String(decoding: scalars, as: UTF8.self)
        return out.isEmpty ? "%" : out // "%" alone: the empty value
    }

    static func decodeBytes(_ s: String) -> [UInt8] {
        if s == "%" { return [] }
        var out: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 65...70: c - 55
            case 97...102: c - 87
            default: nil
            }
        }
        while i < u.count {
            if u[i] == 37, i + 2 < u.count, let h = nibble(u[i + 1]), let l = nibble(u[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return out
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
