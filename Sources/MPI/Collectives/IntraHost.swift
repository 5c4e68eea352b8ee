#if canImport(Glibc)
import Glibc
#endif
import CMyriXen
import MyriXen

/// The memory the members of a communicator that all sit on one host share for their
/// intra-host collectives (Algorithms/SharedMemoryCollectives.swift): a segment the backend
/// grants to each of them (`MXEndpoint.shareSegment`), under a random key the lowest rank
/// draws and broadcasts.
///
/// Layout: one 64-byte line per rank holding its flag, the byte counts it declared and up to
/// 16 bytes of data (per bank), then two banks (by the parity of the call) of one data slot
/// per rank. Every flag has a single writer, its rank, which stores
/// the number of its latest call (release) once it published its data in that call, or, for
/// a rank that only reads (a broadcast's non-roots), as its call starts. So a flag at
/// `k` or above says its rank is done reading everything of the calls before `k`: a rank
/// writes its slot of bank `k % 2` only after every flag reached `k - 1`.
@_spi(Testing) public final class IntraHost {
    /// Bytes of one rank's slot: what a rank publishes in one call.
    public static let slotBytes = 64 << 10
    /// Messages up to this go whole through the slots (every reader reduces them all);
    /// longer allreduces go in chunks of a slot, each reduced a portion per rank
    /// (`SharedMemoryCollectives.allreduceLong`), up to `longBytes`.
    public static let shortBytes = 8 << 10
    static let longBytes = 4 << 20
    /// Longer broadcasts are read straight from the root's buffer (`bcastLong`) up to this.
    public static let singleCopyBytes = 64 << 20
    /// Members a segment serves (beyond that the flat algorithms do as well).
    public static let maxRanks = 64
    static let lineBytes = 64

    let base: UnsafeMutableRawPointer
    let ranks: Int
    let me: Int
    /// Calls made on this segment.
    var calls: UInt64 = 0
    unowned(unsafe) let comm: Communicator

    static func bytes(ranks: Int) -> Int { ranks * lineBytes + 2 * ranks * slotBytes }

    init(base: UnsafeMutableRawPointer, comm: Communicator) {
        self.base = base
        self.comm = comm
        ranks = comm.size
        me = comm.rank
    }

    /// Writes this rank's pid into its line, where readers of its buffers find it (done
    /// before the members agree to use the segment, which orders it before any read).
    static func announce(_ base: UnsafeMutableRawPointer, rank: Int) {
        cmx_store_relaxed_u64(base + rank * lineBytes + 24, UInt64(getpid()))
    }
    @inline(__always) func pid(of r: Int) -> pid_t { pid_t(truncatingIfNeeded: cmx_load_relaxed_u64(flag(r) + 24)) }

    /// Copies `bytes` from rank `r`'s memory at `address` into `into`, in one copy by the
    /// kernel (process_vm_readv, as the channel's rendezvous pulls).
    func read(from r: Int, address: UInt64, bytes: Int, into: UnsafeMutableRawPointer) throws(MPIError) {
        var done = 0
        while done < bytes {
            var local = iovec(iov_base: into + done, iov_len: bytes - done)
            var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address) + UInt(done)), iov_len: bytes - done)
            let n = cmx_pull(pid(of: r), &local, 1, &remote, 1)
            guard n > 0 else {
                throw MPIError(.other, "cannot read \(comm.describe(r))'s buffer (pid \(pid(of: r))): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    @inline(__always) func flag(_ r: Int) -> UnsafeMutableRawPointer { base + r * IntraHost.lineBytes }
    @inline(__always) func slot(_ call: UInt64, _ r: Int) -> UnsafeMutableRawPointer {
        base + ranks * IntraHost.lineBytes + (Int(call & 1) * ranks + r) * IntraHost.slotBytes
    }

    /// Data up to this many bytes travels inside the rank's flag line (one per bank), so a
    /// reader takes one cache miss for flag, count and data (XHC inlines tiny messages so).
    static let inlineBytes = 16
    /// Where rank `r`'s `bytes` of `call` are: inside its flag line when they fit, else its slot.
    @inline(__always) func data(_ call: UInt64, _ r: Int, bytes: Int) -> UnsafeMutableRawPointer {
        bytes <= IntraHost.inlineBytes ? flag(r) + 32 + Int(call & 1) * IntraHost.inlineBytes : slot(call, r)
    }

    /// Starts a call: its number.
    @inline(__always) func begin() -> UInt64 {
        calls &+= 1
        return calls
    }

    @inline(__always) func publish(_ call: UInt64) { cmx_store_release_u64(flag(me), call) }

    /// What a rank says about its slot in `call` (before publishing it): its byte count, or
    /// `invalid`/`invalidCount` when its arguments were wrong. One word per bank, beside the flag.
    @inline(__always) func declare(_ call: UInt64, bytes: UInt64) {
        cmx_store_relaxed_u64(flag(me) + 8 + Int(call & 1) * 8, bytes)
    }
    @inline(__always) func declared(_ call: UInt64, by r: Int) -> UInt64 {
        cmx_load_relaxed_u64(flag(r) + 8 + Int(call & 1) * 8)
    }
    /// A rank's output was too small (`invalid`), or its counts wrong (`invalidCount`).
    static let invalid = UInt64.max
    static let invalidCount = UInt64.max - 1

    /// After a mismatch seen in a one-call protocol: if some rank declared a long message it
    /// took a two-call one, so this rank takes the second call too and all stay in step.
    func keepInStepWithLongPath(_ call: UInt64) {
        let long = (0..<ranks).contains { r in
            let d = declared(call, by: r)
            return d < IntraHost.invalidCount && d > UInt64(IntraHost.shortBytes)
        }
        if long { publish(begin()) }
    }

    /// The error of a call where rank `r` declared `theirs` bytes and this rank `mine`.
    func mismatch(_ name: String, _ r: Int, theirs: UInt64, mine: Int) -> MPIError {
        if theirs == IntraHost.invalid {
            return MPIError(.buffer, CollectiveTag.reportPrefix + "\(comm.describe(r)): \(name): its output is too small for the count")
        }
        if theirs == IntraHost.invalidCount {
            return MPIError(.count, CollectiveTag.reportPrefix + "\(comm.describe(r)): \(name): its count does not fit the call")
        }
        return MPIError(.count, "\(name): \(comm.describe(r)) passes \(theirs) bytes where this rank passes \(mine) (are the counts the same on every rank?)")
    }

    /// Waits until rank `r`'s flag reached `call`.
    @inline(__always) func wait(for r: Int, _ call: UInt64) {
        if cmx_load_acquire_u64(flag(r)) >= call { return }
        waitSlow(from: r, to: r + 1, call)
    }

    /// The highest call every flag was seen to reach (flags only grow): what `mayWrite` need
    /// not look at again, sparing a cache miss on a line another rank just wrote.
    var seenAll: UInt64 = 0

    /// Waits until every flag reached `call`.
    @inline(__always) func waitAll(_ call: UInt64) {
        if seenAll >= call { return }
        for r in 0..<ranks where cmx_load_acquire_u64(flag(r)) < call { waitSlow(from: r, to: ranks, call) }
        seenAll = call
    }

    /// Before writing this rank's slot in `call`: everyone is done with the call before the
    /// last (which used the same bank).
    @inline(__always) func mayWrite(_ call: UInt64) {
        if call > 1 { waitAll(call - 1) }
    }

    /// Spins briefly (not at all on an oversubscribed host), then yields between looks,
    /// then naps 50 µs at a time; all along keeps the endpoint and the collectives in flight
    /// going, so a peer waiting for this rank's point-to-point traffic is not stuck.
    @inline(never)
    func waitSlow(from first: Int, to end: Int, _ call: UInt64) {
        let endpoint = comm.endpoint
        let spinNs = UInt64(endpoint.options.spinMicroseconds) * 1000
        let napAfter = UInt64(endpoint.options.sleepAfterMicroseconds) * 1000
        var start: UInt64 = 0
        var looks: UInt32 = 0
        var r = first
        while r < end {
            if cmx_load_acquire_u64(flag(r)) >= call { r += 1; continue }
            looks &+= 1
            guard looks & 0x3F == 0 else { continue }
            let now = monotonicNanoseconds()
            if start == 0 { start = now }
            let waited = now - start
            comm.engine.poll()
            try? endpoint.progress()
            if waited > napAfter {
                var ts = timespec(tv_sec: 0, tv_nsec: 50_000)
                nanosleep(&ts, nil)
            } else if waited > spinNs {
                sched_yield()
            }
        }
    }
}

extension Communicator {
    /// This communicator's shared segment, when its members all sit on one host (nil
    /// otherwise, or when the backend could not give one to every member: the collectives
    /// then take the channel's algorithms). Made by the first call that wants it, which every
    /// member makes (the choice depends only on what every member knows alike).
    func intraHost() throws(MPIError) -> IntraHost? {
        switch intraHostState {
        case let .ready(s): return s
        case .unavailable: return nil
        case .unknown: break
        }
        guard size >= 2, size <= IntraHost.maxRanks, let l = layout, l.hosts.count == 1 else {
            // Not yet known (the layout comes with the first world collective): ask again later.
            if layout != nil || size < 2 { intraHostState = .unavailable }
            return nil
        }
        intraHostState = .unavailable // while it is being made, the calls below go flat
        let key = try bcast(rank == 0 ? UInt64.random(in: 1...UInt64.max) : 0, root: 0)
        var mapped: UnsafeMutableRawPointer?
        do { mapped = try endpoint.shareSegment(key: key, size: IntraHost.bytes(ranks: size)) } catch {
            mapped = nil
        }
        if let m = mapped { IntraHost.announce(m, rank: rank) }
        // Every member must take the same path: the segment only if all of them have it.
        let everyone = try allreduce(Int32(mapped == nil ? 0 : 1), .min)
        guard everyone == 1, let base = mapped else { return nil }
        let s = IntraHost(base: base, comm: self)
        intraHostState = .ready(s)
        return s
    }

    enum IntraHostState {
        case unknown, unavailable
        case ready(IntraHost)
    }
}
