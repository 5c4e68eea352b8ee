import PMI

/// The process manager's side of PMI-1 for one job: the key-value space, barriers, and the
/// answers each command gets, exactly as MPICH's simple PMI client expects them. Pure logic:
/// it turns a rank's message into replies (to that rank or to all) and job events, so it is
/// tested against recorded MPICH exchanges without processes.
public struct PMIServer {
    public enum Event: Equatable {
        /// `rank` asked to end the job.
        case abort(rank: Int, code: Int32, message: String)
        /// `rank` finalized.
        case finalized(rank: Int)
        /// Every rank entered the barrier: all of them are answered.
        case barrierReleased
        /// `rank`'s put (or, from an agent, its host's puts) would take the job's key-value
        /// space over `putBytesMax`: refused, and the job ends.
        case kvsFull(rank: Int)
    }

    public struct Outcome: Equatable {
        /// Replies to the rank that spoke.
        public var replies: [PMIMessage] = []
        /// Messages to every rank (a released barrier).
        public var broadcast: [PMIMessage] = []
        public var events: [Event] = []
    }

    public let size: Int
    public let kvsname: String
    public let appnum: [Int]
    public private(set) var kvs: [String: String]
    /// Puts since the last released barrier: what agents' caches still lack.
    public var sinceRelease: [(key: String, value: String)] { round.entries }
    var round = PutRound()
    var inBarrier: Set<Int> = []
    public private(set) var finalized: Set<Int> = []
    /// Ranks that exited without finalizing: no barrier can complete any more.
    public private(set) var departed: Set<Int> = []

    /// What `get_maxes` advertises, and what puts are held to.
    public static let kvsnameMax = 256
    public static let keyMax = 64
    public static let valueMax = 1024
    /// The longest request line (without its newline) taken from a rank; a longer one cuts the
    /// rank off. MPICH's client writes at most 1024 bytes a line (PMIU_MAXLINE); the longest
    /// request the maxes allow, a put with kvsname, key and value at their limits, is 1.4 KB.
    public static let lineMax = 4096
    /// What the job's key-value space holds in all, counting every entry's key and value plus
    /// `putOverhead` (so a flood of tiny puts is bounded too). A put beyond it is refused; a
    /// key put again costs only what its value grew (and gives back what it shrank).
    public static let putBytesMax = 16 << 20
    public static let putOverhead = 16
    /// Replies one rank has not read yet: a client reads each before its next request, so
    /// this is thousands of pipelined ones. A rank with more waiting is cut off.
    public static let replyQueueMax = 1 << 20
    /// Words for a rank cut off at `putBytesMax`.
    public static let kvsFullReason = "put more than the job's key-value space holds (\(putBytesMax >> 20) MiB of keys and values)"

    /// What the entries held cost against `putBytesMax` (the served `PMI_process_mapping` too).
    public private(set) var putBytes = 0

    /// Keys the process manager serves (`PMI_process_mapping`, and any other `PMI_` key): a
    /// rank's put of one is refused, so no rank can change what the others read there.
    public static func isReserved(_ key: String) -> Bool { key.hasPrefix("PMI_") }

    /// `appnum[r]` is rank r's program in an MPMD job; `processMapping` is served as
    /// `PMI_process_mapping`.
    public init(size: Int, kvsname: String, appnum: [Int], processMapping: String) {
        self.size = size
        self.kvsname = kvsname
        self.appnum = appnum
        kvs = ["PMI_process_mapping": processMapping]
        putBytes = Self.cost("PMI_process_mapping", processMapping)
    }

    public var barrierWaiters: Int { inBarrier.count }

    /// A rank's process ended. Returns true when that strands others (they wait in a barrier
    /// that can no longer complete, or the rank never finalized and someone still talks PMI).
    public mutating func rankExited(_ rank: Int) -> Bool {
        guard !finalized.contains(rank) else { return false }
        departed.insert(rank)
        inBarrier.remove(rank)
        return !inBarrier.isEmpty
    }

    /// Handles one message from `rank`.
    public mutating func handle(_ m: PMIMessage, from rank: Int) -> Outcome {
        var out = Outcome()
        func reply(_ cmd: String, _ fields: [(String, String)] = []) { out.replies.append(PMIMessage(cmd, fields)) }
        switch m.command {
        case "init":
            let version = m["pmi_version"] ?? "1"
            if version == "1" {
                reply("response_to_init", [("rc", "0"), ("pmi_version", "1"), ("pmi_subversion", "1")])
            } else {
                reply("response_to_init", [("rc", "-1"), ("pmi_version", "1"), ("pmi_subversion", "1")])
            }
        case "get_maxes":
            reply("maxes", [("rc", "0"), ("kvsname_max", String(Self.kvsnameMax)), ("keylen_max", String(Self.keyMax)),
                            ("vallen_max", String(Self.valueMax))])
        case "get_appnum":
            reply("appnum", [("rc", "0"), ("appnum", String(appnum[rank]))])
        case "get_my_kvsname":
            reply("my_kvsname", [("rc", "0"), ("kvsname", kvsname)])
        case "get_universe_size":
            reply("universe_size", [("rc", "0"), ("size", String(size))])
        case "put":
            guard let key = m["key"], let value = m["value"] else {
                reply("put_result", [("rc", "-1"), ("msg", "put_needs_key_and_value")])
                break
            }
            guard m["kvsname"] == nil || m["kvsname"] == kvsname else {
                reply("put_result", [("rc", "-1"), ("msg", "unknown_kvsname")])
                break
            }
            guard key.utf8.count <= Self.keyMax, value.utf8.count <= Self.valueMax else {
                reply("put_result", [("rc", "-1"), ("msg", "key_or_value_too_long")])
                break
            }
            guard !Self.isReserved(key) else {
                reply("put_result", [("rc", "-1"), ("msg", "key_\(key)_is_reserved_for_the_process_manager")])
                break
            }
            guard charge(key, value) else {
                reply("put_result", [("rc", "-1"), ("msg", "key-value_space_full:_\(Self.putBytesMax)_bytes_a_job")])
                out.events.append(.kvsFull(rank: rank))
                break
            }
            kvs[key] = value
            round.record(key, value)
            reply("put_result", [("rc", "0")])
        case "get":
            if let key = m["key"], m["kvsname"] == nil || m["kvsname"] == kvsname, let v = kvs[key] {
                reply("get_result", [("rc", "0"), ("value", v)])
            } else {
                reply("get_result", [("rc", "-1"), ("msg", "key_\(m["key"] ?? "")_not_found")])
            }
        case "barrier_in":
            inBarrier.insert(rank)
            releaseIfComplete(&out)
        case "finalize":
            finalized.insert(rank)
            reply("finalize_ack", [("rc", "0")])
            out.events.append(.finalized(rank: rank))
        case "abort":
            let code = Int32(m["exitcode"] ?? "1") ?? 1
            out.events.append(.abort(rank: rank, code: code, message: m["message"] ?? ""))
        default:
            // Unknown or unsupported (spawn, publish_name, ...): say so, keep the rank alive.
            reply(m.command + "_result", [("rc", "-1"), ("msg", "unsupported_command_\(m.command)")])
        }
        return out
    }

    /// What an entry costs against `putBytesMax`.
    static func cost(_ key: String, _ value: String) -> Int { key.utf8.count + value.utf8.count + putOverhead }

    /// What storing `value` under `key` adds to `putBytes`: a new key its whole cost, a key
    /// held already the difference (negative when the value shrinks).
    func growth(_ key: String, _ value: String) -> Int {
        Self.cost(key, value) - (kvs[key].map { Self.cost(key, $0) } ?? 0)
    }

    /// Counts a put against the job's budget, before it is stored: only what it adds, so a
    /// rank that keeps overwriting one key is not cut off; false (nothing counted) when it
    /// does not fit.
    mutating func charge(_ key: String, _ value: String) -> Bool {
        let grows = growth(key, value)
        guard putBytes + grows <= Self.putBytesMax else { return false }
        putBytes += grows
        return true
    }

    mutating func releaseIfComplete(_ out: inout Outcome) {
        if inBarrier.count == size {
            inBarrier.removeAll()
            out.broadcast.append(PMIMessage("barrier_out", [("rc", "0")]))
            out.events.append(.barrierReleased)
        }
    }

    /// An agent's whole host entered the barrier at once, with the puts its ranks made since
    /// the last one (per-host combining: one message per host per barrier).
    public mutating func hostEntered(ranks: [Int], puts: [(key: String, value: String)]) -> Outcome {
        var out = Outcome()
        for (k, v) in puts where !Self.isReserved(k) { // an agent's proxy refused these already
            guard charge(k, v) else {
                out.events.append(.kvsFull(rank: ranks.min() ?? -1))
                return out
            }
            kvs[k] = v
            round.record(k, v)
        }
        for r in ranks where r >= 0 && r < size { inBarrier.insert(r) }
        releaseIfComplete(&out)
        return out
    }

    /// The puts since the last release, to send to agents with it; starts a new round.
    public mutating func takeDelta() -> [(key: String, value: String)] { round.take() }

    /// An agent's cache takes what the other hosts put (swiftrun admitted it: it is counted,
    /// never refused, so `putBytes` stays what the cached entries cost).
    public mutating func merge(_ entries: [(key: String, value: String)]) {
        for (k, v) in entries {
            putBytes += growth(k, v)
            kvs[k] = v
        }
    }

    /// Whether a barrier waits on a rank that left (the job can never finish).
    public var barrierIsStranded: Bool { !inBarrier.isEmpty && !departed.isEmpty }
}

/// An agent's PMI for its host's ranks: it answers what needs no other host (init, maxes,
/// appnum, kvsname, universe size, puts, gets it can answer from its cache), holds barrier
/// entries until all its live ranks are in, and then sends swiftrun one message with them
/// and the host's puts. Everything else (gets it cannot answer, finalize, abort) is relayed.
public struct PMIProxy {
    public enum Action: Equatable {
        case reply(PMIMessage)
        case relay
        case barrier(ranks: [Int], puts: [PMIMessage])
        /// The host's puts outgrew the job's key-value space (`PMIServer.putBytesMax`).
        case kvsFull
    }

    var local: PMIServer
    let ranks: Set<Int>
    var waiting: Set<Int> = []
    var gone: Set<Int> = []
    var pending = PutRound()

    public init(size: Int, kvsname: String, appnum: [Int], ranks: Set<Int>, processMapping: String) {
        local = PMIServer(size: size, kvsname: kvsname, appnum: appnum, processMapping: processMapping)
        self.ranks = ranks
    }

    public mutating func handle(_ m: PMIMessage, from rank: Int) -> [Action] {
        switch m.command {
        case "init", "get_maxes", "get_appnum", "get_my_kvsname", "get_universe_size":
            return local.handle(m, from: rank).replies.map(Action.reply)
        case "put":
            let out = local.handle(m, from: rank)
            if out.replies.first?.rc == 0, let k = m["key"], let v = m["value"] { pending.record(k, v) }
            return out.replies.map(Action.reply) + (out.events.contains(.kvsFull(rank: rank)) ? [.kvsFull] : [])
        case "get":
            if let k = m["key"], local.kvs[k] != nil { return local.handle(m, from: rank).replies.map(Action.reply) }
            return [.relay]
        case "barrier_in":
            waiting.insert(rank)
            return barrierIfComplete()
        default:
            return [.relay]
        }
    }

    /// One of the host's ranks ended: the host's barrier no longer waits for it.
    public mutating func rankExited(_ rank: Int) -> [Action] {
        gone.insert(rank)
        waiting.remove(rank)
        return barrierIfComplete()
    }

    mutating func barrierIfComplete() -> [Action] {
        guard !waiting.isEmpty, waiting.union(gone) == ranks else { return [] }
        let entered = waiting.sorted()
        let puts = pending.take().map { PMIMessage("kv", [($0.key, $0.value)]) }
        return [.barrier(ranks: entered, puts: puts)]
    }

    /// swiftrun released the barrier with every put made since the last one: the ranks that
    /// waited are answered.
    public mutating func release(_ delta: [(key: String, value: String)]) -> [Int] {
        local.merge(delta)
        defer { waiting.removeAll() }
        return waiting.sorted()
    }
}

/// The puts of one round (until a barrier is released): each key once, with its latest value,
/// in the order first put. A key overwritten again and again takes one place, so what a round
/// holds (and an agent's barrier message carries) is bounded by the key-value space, not by
/// the number of puts.
struct PutRound {
    private(set) var entries: [(key: String, value: String)] = []
    private var index: [String: Int] = [:]

    mutating func record(_ key: String, _ value: String) {
        if let i = index[key] {
            entries[i].value = value
        } else {
            index[key] = entries.count
            entries.append((key, value))
        }
    }

    /// The round's puts; starts a new round.
    mutating func take() -> [(key: String, value: String)] {
        defer {
            entries.removeAll()
            index.removeAll()
        }
        return entries
    }
}
