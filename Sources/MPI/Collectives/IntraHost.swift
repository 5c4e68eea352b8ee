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
    /// Bytes of one rank's slot: what a rank publishes in one call (four times that on a
    /// crowded host, `slot`).
    public static let slotBytes = 64 << 10
    /// Allreduces up to this go whole through the slots (every reader reduces them all);
    /// longer ones go in chunks, each rank reducing a portion of each
    /// (`SharedMemoryCollectives.allreduceLong`).
    public static let shortBytes = 8 << 10
    /// An alltoall whose blocks, in and out, come to this many bytes in all (p² × block × 2)
    /// reads every other rank's input in one copy by the kernel rather than copying it in and
    /// out of the segment: past the last-level cache (16 MiB on this machine kind) the second
    /// copy costs memory bandwidth, more than the kernel's slower copy saves (measured:
    /// docs/collectives.md).
    public static let singleCopyFootprint = 16 << 20
    /// Members a segment serves (beyond that the flat algorithms do as well).
    public static let maxRanks = 64
    static let lineBytes = 64

    let base: UnsafeMutableRawPointer
    let ranks: Int
    let me: Int
    /// Calls made on this segment.
    var calls: UInt64 = 0
    unowned(unsafe) let comm: Communicator

    /// Whether the members share fewer CPUs than they are (oversubscribed): every call is a
    /// meeting of all, which there costs a round of context switches, so the protocols take
    /// as few calls as they can, in slots four times as large.
    let crowded: Bool
    /// Bytes of one rank's slot in this segment.
    let slot: Int

    static func slotBytes(crowded: Bool) -> Int { crowded ? 4 * slotBytes : slotBytes }
    static func bytes(ranks: Int, crowded: Bool) -> Int { ranks * lineBytes + 2 * ranks * slotBytes(crowded: crowded) }

    /// The segment's key (what `leave` gives back).
    let key: UInt64
    /// This process, for the others' single-copy reads of its buffers (`expose`).
    let pid = getpid()

    init(base: UnsafeMutableRawPointer, key: UInt64, comm: Communicator, crowded: Bool) {
        self.base = base
        self.key = key
        self.comm = comm
        self.crowded = crowded
        slot = IntraHost.slotBytes(crowded: crowded)
        ranks = comm.size
        me = comm.rank
    }

    @inline(__always) func flag(_ r: Int) -> UnsafeMutableRawPointer { base + r * IntraHost.lineBytes }

    /// Where this rank's `buffer` is, for the others to read it in `call` (`read`): its address
    /// and pid, in its inline data.
    @inline(__always) func expose(_ call: UInt64, _ buffer: UnsafeRawPointer) {
        cmx_store_relaxed_u64(inline(call, me), UInt64(UInt(bitPattern: buffer)))
        cmx_store_relaxed_u64(inline(call, me) + 8, UInt64(pid))
    }

    /// Copies `bytes` at `offset` of the buffer rank `r` exposed in `call` into `into`, in one
    /// copy by the kernel (process_vm_readv, as the channel's rendezvous pulls).
    func read(_ call: UInt64, from r: Int, offset: Int, bytes: Int, into: UnsafeMutableRawPointer) throws(MPIError) {
        let address = UInt(cmx_load_relaxed_u64(inline(call, r))) + UInt(offset)
        let pid = pid_t(truncatingIfNeeded: cmx_load_relaxed_u64(inline(call, r) + 8))
        var done = 0
        while done < bytes {
            var local = iovec(iov_base: into + done, iov_len: bytes - done)
            var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: address + UInt(done)), iov_len: bytes - done)
            let n = cmx_pull(pid, &local, 1, &remote, 1)
            guard n > 0 else {
                throw MPIError(.other, "cannot read \(comm.describe(r))'s buffer (pid \(pid)): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
    @inline(__always) func slot(_ call: UInt64, _ r: Int) -> UnsafeMutableRawPointer {
        base + ranks * IntraHost.lineBytes + (Int(call & 1) * ranks + r) * slot
    }

    /// Data up to this many bytes travels inside the rank's flag line (one per bank), so a
    /// reader takes one cache miss for flag, count and data (XHC inlines tiny messages so).
    static let inlineBytes = 16
    /// Where rank `r`'s `bytes` of `call` are: inside its flag line when they fit, else its slot.
    @inline(__always) func data(_ call: UInt64, _ r: Int, bytes: Int) -> UnsafeMutableRawPointer {
        bytes <= IntraHost.inlineBytes ? inline(call, r) : slot(call, r)
    }
    /// Rank `r`'s inline data of `call`, in its flag line.
    @inline(__always) func inline(_ call: UInt64, _ r: Int) -> UnsafeMutableRawPointer {
        flag(r) + 32 + Int(call & 1) * IntraHost.inlineBytes
    }

    /// The chunk a broadcast of `bytes` goes in: the whole message up to 4 KiB, else about an
    /// eighth of it (a pipeline of eight, each stage a copy in by the root and a copy out by
    /// the others) between 4 KiB and a whole bank (every rank's slot of it, which only the
    /// root writes in a broadcast); on a crowded host, a whole bank. Every rank computes it
    /// from the same count.
    @inline(__always) func bcastChunk(_ bytes: Int) -> Int {
        crowded ? ranks * slot : min(ranks * slot, max(4 << 10, (bytes / 8 + 4095) & ~4095))
    }

    /// Starts a call: its number.
    @inline(__always) func begin() -> UInt64 {
        calls &+= 1
        return calls
    }

    @inline(__always) func publish(_ call: UInt64) { cmx_store_release_u64(flag(me), call) }

    /// What a rank says about its part in `call` (before publishing it): its byte count, or
    /// `invalid`/`invalidCount` when its arguments were wrong. Three words beside the flag, by
    /// `call % 3`: a rank that only reads (a broadcast's non-root) declares without waiting
    /// for the others' flags, and is never more than two calls ahead of one still reading
    /// its declaration (every call waits for a writer that waited for all at the one before).
    @inline(__always) func declare(_ call: UInt64, bytes: UInt64) {
        cmx_store_relaxed_u64(flag(me) + 8 + Int(call % 3) * 8, bytes)
    }
    @inline(__always) func declared(_ call: UInt64, by r: Int) -> UInt64 {
        cmx_load_relaxed_u64(flag(r) + 8 + Int(call % 3) * 8)
    }
    /// A rank's output was too small (`invalid`), or its counts wrong (`invalidCount`).
    static let invalid = UInt64.max
    static let invalidCount = UInt64.max - 1
    /// Added to a declared count by a rank whose protocol reads the others' buffers in one
    /// copy (`SharedMemoryCollectives.alltoall`, not in place): one in place among them fails all.
    static let singleCopyMark: UInt64 = 1 << 60

    /// The error of a call where rank `r` declared `theirs` bytes and this rank `mine`.
    func mismatch(_ name: String, _ r: Int, theirs: UInt64, mine: Int) -> MPIError {
        if theirs == IntraHost.invalid {
            return MPIError(.buffer, CollectiveTag.reportPrefix + "\(comm.describe(r)): \(name): its output is too small for the count")
        }
        if theirs == IntraHost.invalidCount {
            return MPIError(.count, CollectiveTag.reportPrefix + "\(comm.describe(r)): \(name): its count does not fit the call")
        }
        if theirs ^ UInt64(mine) == IntraHost.singleCopyMark {
            return MPIError(.arg, "\(name): \(comm.describe(r)) and this rank disagree on in place (every rank passes its data in place, or none does)")
        }
        return MPIError(.count, "\(name): \(comm.describe(r)) passes \(theirs & ~IntraHost.singleCopyMark) bytes where this rank passes \(UInt64(mine) & ~IntraHost.singleCopyMark) (are the counts the same on every rank?)")
    }

    /// Fails unless every rank declared `bytes` in `call` (waiting until every flag reached
    /// it): what a protocol of several calls checks before its second, so that on a mismatch
    /// all ranks leave after the first call and stay in step.
    func expectEveryone(_ call: UInt64, declared bytes: Int, _ name: String) throws(MPIError) {
        waitAll(call)
        for r in 0..<ranks where r != me {
            let theirs = declared(call, by: r)
            if theirs != UInt64(bytes) { throw mismatch(name, r, theirs: theirs, mine: bytes) }
        }
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
    /// then naps, 50 µs at first and a twentieth of the time waited so far later, up to
    /// `longestNap` (a rank waiting a second for a busy one then costs about 0.5% of a CPU,
    /// 6% with 50 µs naps, while a wait of w wakes at most w/20 late); all along keeps
    /// the endpoint and the collectives in flight going, so a peer waiting for this rank's
    /// point-to-point traffic is not stuck.
    static let longestNap: UInt64 = 10_000_000

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
                var ts = timespec(tv_sec: 0, tv_nsec: Int(min(IntraHost.longestNap, max(50_000, waited / 20))))
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
        // The lowest rank draws the key and says whether the host is crowded, for all alike.
        var agreed: [UInt64] = rank == 0 ? [UInt64.random(in: 1...UInt64.max), MXEndpointOptions.isOversubscribed ? 1 : 0] : [0, 0]
        try bcast(&agreed, root: 0)
        let crowded = agreed[1] == 1
        var mapped: UnsafeMutableRawPointer?
        do { mapped = try endpoint.shareSegment(key: agreed[0], size: IntraHost.bytes(ranks: size, crowded: crowded)) } catch {
            mapped = nil
        }
        // Every member must take the same path: the segment only if all of them have it.
        let everyone = try allreduce(Int32(mapped == nil ? 0 : 1), .min)
        guard everyone == 1, let base = mapped else {
            if mapped != nil { try? endpoint.leaveSegment(key: agreed[0]) } // not used: given back
            return nil
        }
        let s = IntraHost(base: base, key: agreed[0], comm: self, crowded: crowded)
        intraHostState = .ready(s)
        return s
    }

    /// Gives this communicator's segment back (when it is freed): unmapped here, and gone
    /// once every member left it, so a program that makes and frees communicators keeps
    /// getting segments (an endpoint shares at most 16 at once).
    func leaveIntraHost() {
        if case let .ready(s) = intraHostState { try? endpoint.leaveSegment(key: s.key) }
        intraHostState = .unavailable
    }

    enum IntraHostState {
        case unknown, unavailable
        case ready(IntraHost)
    }
}
