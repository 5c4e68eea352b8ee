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
    public static func load(_ path: String) throws(LaunchError) -> [HostEntry] {
        guard let f = fopen(path, "r") else {
            throw LaunchError("cannot read hostfile \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(f) }
        var text = ""
        var buf = [CChar](repeating: 0, count: 4096)
        while fgets(&buf, Int32(buf.count), f) != nil {
            text += String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(LaunchError) -> [HostEntry] {
        var entries = Entries()
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNo = i + 1
            func fail(_ what: String) -> LaunchError { LaunchError("\(file):\(lineNo): \(what)") }
            var line = raw
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let first = words.first else { continue }
            var entry = try hostWord(String(first), fail: fail)
            for w in words.dropFirst() {
                let parts = w.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else {
                    throw fail("'\(w)' is not slots=N or max_slots=N (MPICH form is host:N, one host a line)")
                }
                let field = parts[0]
                guard ["slots", "cpu", "cpus", "max_slots", "max-slots"].contains(field) else {
                    throw fail("unknown field '\(field)' (expected slots= or max_slots=)")
                }
                let n = try slotCount(parts[1], field: String(field), fail: fail)
                if field.hasPrefix("max") { entry.maxSlots = n } else { entry.slots = n }
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
        let fail = { (what: String) in LaunchError("--host \(list): \(what)") }
        for item in list.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw LaunchError("--host \(list): an empty host name between commas") }
            let e = try hostWord(String(item), fail: fail)
            try entries.add(HostEntry(name: e.name, user: e.user, slots: e.slots ?? 1), fail: fail)
        }
        return entries.list
    }

    /// `[user@]host[:N]`.
    static func hostWord(_ word: String, fail: (String) -> LaunchError) throws(LaunchError) -> HostEntry {
        var rest = Substring(word)
        var user: String?
        if let at = rest.firstIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            guard !user!.isEmpty else { throw fail("'\(word)': empty user before '@'") }
        }
        var slots: Int?
        if let colon = rest.lastIndex(of: ":") {
            let n = rest[rest.index(after: colon)...]
            switch Count(n, limit: MXLimits.maxRanksPerHost) {
            case let .value(v): slots = v
            case .notPositive: throw fail("'\(word)': the count after ':' must be a positive number")
            case .over: throw fail("'\(word)': \(n) slots is more than \(Mapper.perHostLimit); lower it")
            }
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { throw fail("'\(word)': no host name") }
        guard rest.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" }) else {
            throw fail("'\(rest)' is not a valid host name")
        }
        return HostEntry(name: String(rest), user: user, slots: slots)
    }
}
