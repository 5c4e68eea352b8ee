#if canImport(Glibc)
import Glibc
#endif
import MyriXen

/// One host a job may run on, with its slots (ranks it takes before it is oversubscribed).
public struct HostEntry: Equatable, Sendable {
    public var name: String
    public var user: String?
    /// nil: as many as the job needs (the local host without a hostfile).
    public var slots: Int?
    public var maxSlots: Int?

    public init(name: String, user: String? = nil, slots: Int?, maxSlots: Int? = nil) {
        self.name = name
        self.user = user
        self.slots = slots
        self.maxSlots = maxSlots
    }
}

/// Hostfiles in both traditions: MPICH's `host` / `host:N` and Open MPI's
/// `host slots=N [max_slots=M]` (with an optional `user@`), `#` comments and blank lines.
/// A host named twice adds its slots. Errors name the file, the line and the fix. Counts are
/// bounded: a host's slots (added up) at most `MXLimits.maxRanksPerHost`, at most
/// `MXLimits.maxRanksPerJob` hosts.
public enum Hostfile {
    /// The largest hostfile read (65,536 hosts with long names and comments fit many times).
    public static let maxBytes = 16 << 20

    public static func load(_ path: String) throws(LaunchError) -> [HostEntry] {
        let shown = Visible.text(path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw LaunchError("cannot read hostfile \(shown): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
            throw LaunchError("hostfile \(shown) is a directory, not a file; give the file that lists the hosts (e.g. hostfiles/localhost)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw LaunchError("cannot read hostfile \(shown): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
            // A stream without end (/dev/zero, a pipe that never closes with garbage) stops here.
            if bytes.count > maxBytes { throw LaunchError("hostfile \(shown) is larger than \(maxBytes >> 20) MiB; is it a hostfile?") }
            if chunk.withUnsafeBytes({ memchr($0.baseAddress!, 0, n) != nil }) { break } // parse names the line with the NUL
        }
        return try parse(bytes, file: path)
    }

    public static func parse(_ text: String, file: String) throws(LaunchError) -> [HostEntry] {
        try parse(Array(text.utf8), file: file)
    }

    /// The bytes of a hostfile. Text from it appears in errors escaped (`Visible`).
    public static func parse(_ bytes: [UInt8], file: String) throws(LaunchError) -> [HostEntry] {
        let file = Visible.text(file)
        var entries = Entries()
        for (i, raw) in bytes.split(separator: 10, omittingEmptySubsequences: false).enumerated() {
            let lineNo = i + 1
            func fail(_ what: String) -> LaunchError { LaunchError("\(file):\(lineNo): \(what)") }
            if let nul = raw.firstIndex(of: 0) {
                throw fail("a NUL byte (\\x00) at column \(nul - raw.startIndex + 1): a hostfile is text, one host a line")
            }
            var line = raw
            if let hash = line.firstIndex(of: UInt8(ascii: "#")) { line = line[..<hash] }
            let words = line.split(whereSeparator: { $0 == 32 || $0 == 9 || $0 == 13 })
            guard let first = words.first else { continue }
            var entry = try hostWord(first, fail: fail)
            // Each count once: `slots=2 slots=3` (or `host:2 slots=3`) would silently mean 3.
            var given: [String: String] = entry.slots != nil ? ["slots": "':\(entry.slots!)'"] : [:]
            for w in words.dropFirst() {
                let shownWord = Visible.bytes(w)
                let parts = w.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty else {
                    throw fail("'\(shownWord)' is not slots=N or max_slots=N (MPICH form is host:N, one host a line)")
                }
                let field = String(decoding: parts[0], as: UTF8.self)
                guard ["slots", "cpu", "cpus", "max_slots", "max-slots"].contains(field) else {
                    throw fail("unknown field '\(Visible.bytes(parts[0]))' (expected slots= or max_slots=)")
                }
                let kind = field.hasPrefix("max") ? "max_slots" : "slots"
                if let earlier = given[kind] {
                    throw fail("'\(shownWord)': \(kind) is already given (\(earlier)); give it once")
                }
                given[kind] = "'\(shownWord)'"
                let n = try slotCount(Substring(Visible.bytes(parts[1])), field: field, fail: fail)
                if kind == "max_slots" { entry.maxSlots = n } else { entry.slots = n }
            }
            if entry.slots == nil { entry.slots = 1 }
            if let m = entry.maxSlots, let s = entry.slots, m < s {
                throw fail("max_slots=\(m) is less than slots=\(s)")
            }
            try entries.add(entry, fail: fail)
        }
        guard !entries.list.isEmpty else { throw LaunchError("\(file): no hosts in this hostfile") }
        return entries.list
    }

    /// Hosts in the order they first appear; a host named again adds its slots (found by a
    /// dictionary: a hostfile of 65,536 hosts reads as fast as one of two).
    struct Entries {
        var list: [HostEntry] = []
        var index: [String: Int] = [:]

        mutating func add(_ e: HostEntry, fail: (String) -> LaunchError) throws(LaunchError) {
            let key = (e.user ?? "") + "@" + e.name
            guard let k = index[key] else {
                guard list.count < MXLimits.maxRanksPerJob else {
                    throw fail("more than \(MXLimits.maxRanksPerJob) hosts, and \(Mapper.perJobLimit); list fewer")
                }
                index[key] = list.count
                list.append(e)
                return
            }
            let old = list[k]
            let slots = (old.slots ?? 1) + (e.slots ?? 1)
            guard slots <= MXLimits.maxRanksPerHost else {
                throw fail("\(e.name) is named again: its slots add up to \(slots), more than \(Mapper.perHostLimit)")
            }
            list[k].slots = slots
            if old.maxSlots != nil || e.maxSlots != nil {
                let most = (old.maxSlots ?? old.slots ?? 1) + (e.maxSlots ?? e.slots ?? 1)
                guard most <= MXLimits.maxRanksPerHost else {
                    throw fail("\(e.name) is named again: its max_slots add up to \(most), more than \(Mapper.perHostLimit)")
                }
                list[k].maxSlots = most
            }
        }
    }

    /// A slot count (`slots=N`, `max_slots=N`, `host:N`): 1 to `MXLimits.maxRanksPerHost`.
    static func slotCount(_ text: Substring, field: String, fail: (String) -> LaunchError) throws(LaunchError) -> Int {
        switch Count(text, limit: MXLimits.maxRanksPerHost) {
        case let .value(n): return n
        case .notPositive: throw fail("\(field) must be a positive number, not '\(text)'")
        case .over: throw fail("\(field)=\(text) is more than \(Mapper.perHostLimit); lower it")
        }
    }

    /// `--host h1:2,h2` (the command-line form).
    public static func parseHostList(_ list: String) throws(LaunchError) -> [HostEntry] {
        var entries = Entries()
        let fail = { (what: String) in LaunchError("--host \(Visible.text(list)): \(what)") }
        for item in Array(list.utf8).split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw fail("an empty host name between commas") }
            let e = try hostWord(item, fail: fail)
            try entries.add(HostEntry(name: e.name, user: e.user, slots: e.slots ?? 1), fail: fail)
        }
        return entries.list
    }

    /// `[user@]host[:N]`. Names are what DNS, ssh and `ip netns` take: ASCII letters, digits,
    /// `-`, `.`, `_`, not starting with `-` (ssh would read it as an option); anything else (a
    /// NUL, a control character, bytes that are not UTF-8) is an error that shows it escaped.
    static func hostWord(_ word: ArraySlice<UInt8>, fail: (String) -> LaunchError) throws(LaunchError) -> HostEntry {
        let shown = Visible.bytes(word)
        func isName(_ s: ArraySlice<UInt8>) -> Bool {
            s.first != UInt8(ascii: "-") && s.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F
            }
        }
        var rest = word
        var user: String?
        if let at = rest.firstIndex(of: UInt8(ascii: "@")) {
            let u = rest[..<at]
            guard !u.isEmpty else { throw fail("'\(shown)': empty user before '@'") }
            guard isName(u) else { throw fail("'\(Visible.bytes(u))' is not a valid user name") }
            user = String(decoding: u, as: UTF8.self)
            rest = rest[rest.index(after: at)...]
        }
        var slots: Int?
        if let colon = rest.lastIndex(of: UInt8(ascii: ":")) {
            let n = Visible.bytes(rest[rest.index(after: colon)...])
            switch Count(n, limit: MXLimits.maxRanksPerHost) {
            case let .value(v): slots = v
            case .notPositive: throw fail("'\(shown)': the count after ':' must be a positive number")
            case .over: throw fail("'\(shown)': \(n) slots is more than \(Mapper.perHostLimit); lower it")
            }
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { throw fail("'\(shown)': no host name") }
        guard isName(rest) else {
            throw fail("'\(Visible.bytes(rest))' is not a valid host name (letters, digits, '-', '.', '_', not starting with '-')")
        }
        return HostEntry(name: String(decoding: rest, as: UTF8.self), user: user, slots: slots)
    }
}
