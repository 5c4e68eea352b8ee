/// What swiftrun reads from outside (the command line, hostfiles, the environment, PMI lines)
/// is shown and counted here, the same way everywhere.

/// Text as a terminal may show it: printable characters as they are; control characters,
/// DEL, C1 controls, bidirectional overrides and bytes that are not UTF-8 as visible escapes
/// (`\n`, `\t`, `\r`, `\x1b`, `\xff`, `\u{9b}`, `\u{202e}`), so nothing a hostfile or a rank
/// says can move the cursor, retitle the window or hide text. A backslash stays as it is, so
/// escaping twice changes nothing.
public enum Visible {
    public static func text(_ s: some StringProtocol) -> String { bytes(Array(s.utf8)) }

    public static func bytes(_ b: some Collection<UInt8>) -> String {
        let b = Array(b)
        var out = ""
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 {
                switch c {
                case 0x0A: out += "\\n"
                case 0x09: out += "\\t"
                case 0x0D: out += "\\r"
                case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(c))
                default: out += hex(c)
                }
                i += 1
                continue
            }
            let length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1
            if length > 1, i + length <= b.count, let s = String(validating: b[i..<(i + length)], as: UTF8.self),
               let scalar = s.unicodeScalars.first {
                if (0x80...0x9F).contains(scalar.value) || (0x202A...0x202E).contains(scalar.value)
                    || (0x2066...0x2069).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out += s
                }
                i += length
            } else {
                out += hex(c) // not UTF-8: the byte itself, one at a time
                i += 1
            }
        }
        return out
    }

    static func hex(_ c: UInt8) -> String { "\\x" + (c < 16 ? "0" : "") + String(c, radix: 16) }
}

/// A whole number the user gives (a count, seconds), read without ever trapping: in 1...limit,
/// not positive (or not a number), or over the limit (digits too many for an Int included).
enum Count: Equatable {
    case value(Int)
    case notPositive
    case over

    init(_ text: some StringProtocol, limit: Int) {
        if let n = Int(text) {
            self = n < 1 ? .notPositive : n > limit ? .over : .value(n)
            return
        }
        let digits = text.hasPrefix("+") ? Substring(text.dropFirst()) : Substring(text)
        self = !digits.isEmpty && digits.allSatisfy({ $0.isASCII && $0.isNumber }) ? .over : .notPositive
    }
}
