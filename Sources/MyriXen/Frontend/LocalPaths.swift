#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// The three ways a rendezvous message between endpoints of one host moves once it matched
/// (`MXLocalPath` is the user's word on them), and the receiver's choice among them by
/// measurement.
///
/// Which way is fastest is a property of the machine, not of the protocol: on this machine
/// kind, in one phase the piece copy through the ring ran 2.5x ahead of MPICH while a
/// cross-memory-attach pull reached a quarter of memcpy's speed; hours later the same build's
/// piece copy stalled at 9 GB/s and the pull was the faster (docs/performance.md). So the
/// receiver times the messages it receives, per peer and size class, keeps the fastest way,
/// and tries the others again now and then.
enum LocalPathChoice: UInt8 {
    /// The receiver reads it all by cross-memory attach (`process_vm_readv`), alone.
    case pull = 0
    /// The receiver reads the front half while the sender writes the back half into the
    /// receive buffer (`process_vm_writev`): one copy of each byte, two CPUs at it.
    case split = 1
    /// The sender copies pieces into the pair ring, the receiver copies each out (EndpointPull.swift).
    case pieces = 2

    /// Whether the sender takes part (it must run for the message to move).
    var needsSender: Bool { self != .pull }
}

/// Per size class, what each way cost lately, and when to try the others again. The receiver
/// keeps one per peer of its host. All arithmetic, no allocation: it runs on every rendezvous.
struct LocalPathChooser {
    /// Size classes by powers of two: (4 KiB, 8 KiB] is 1, (8, 16] 2, ... 4 MiB is 10; the
    /// last holds everything from 64 MiB up.
    static let classes = 16
    /// A split's halves are whole pages (a half-page split is not worth a record).
    static let splitUnit = 4096
    /// Decisions between tries of another way: from `firstProbe`, doubling each time the
    /// try confirms the choice, up to `lastProbe`, back to `firstProbe` when it changes.
    static let firstProbe: UInt16 = 8
    static let lastProbe: UInt16 = 1024
    /// One message of `timedEvery` on the chosen way is timed, so its cost follows the
    /// machine (a clock read is ~35 ns here, 3% of the smallest rendezvous).
    static let timedEvery: UInt8 = 8

    struct SizeClass {
        /// Nanoseconds per KiB of each way (index: `LocalPathChoice.rawValue`); 0 until measured.
        var cost = InlineArray<3, Float>(repeating: 0)
        var best = LocalPathChoice.pull
        /// Which other way the next try takes (they take turns).
        var nextProbe: UInt8 = 0
        var countdown: UInt16 = LocalPathChooser.firstProbe
        var interval: UInt16 = LocalPathChooser.firstProbe
        var tick: UInt8 = 0
    }

    var sizes = InlineArray<16, SizeClass>(repeating: SizeClass())

    @inline(__always)
    static func sizeClass(_ length: Int) -> Int {
        let bits = Int.bitWidth - (max(length, 1) - 1).leadingZeroBitCount
        return min(classes - 1, max(0, bits - 12))
    }

    /// The way for a message of `length` bytes, and whether to time it. `alone`: no other
    /// transfer that needs its sender is under way (only then is a try of such a way timed
    /// fairly); `splittable`: the receive buffer is one piece, long enough to split.
    @inline(__always)
    mutating func choose(length: Int, alone: Bool, splittable: Bool) -> (path: LocalPathChoice, timed: Bool) {
        let c = LocalPathChooser.sizeClass(length)
        @inline(__always) func allowed(_ k: LocalPathChoice) -> Bool {
            k == .pull || (alone && (k == .pieces || splittable))
        }
        // Every way once, before choosing.
        for i in 0..<3 where sizes[c].cost[i] == 0 {
            let k = LocalPathChoice(rawValue: UInt8(i))!
            if allowed(k) { return (k, true) }
        }
        var best = sizes[c].best
        if best == .split && !splittable {
            // Not this one: the faster of the other two.
            best = sizes[c].cost[2] != 0 && sizes[c].cost[2] < sizes[c].cost[0] ? .pieces : .pull
        }
        if sizes[c].countdown == 0 {
            // A try of one of the other ways (they take turns), when it may run fairly now.
            for step in 1...2 {
                let k = LocalPathChoice(rawValue: UInt8((Int(sizes[c].best.rawValue) + Int(sizes[c].nextProbe) + step) % 3))!
                if k != best && allowed(k) && sizes[c].cost[Int(k.rawValue)] != 0 {
                    sizes[c].nextProbe ^= 1
                    sizes[c].interval = min(sizes[c].interval &* 2, LocalPathChooser.lastProbe)
                    sizes[c].countdown = sizes[c].interval
                    return (k, true)
                }
            }
            // None may run fairly now: the next decision tries again.
        } else {
            sizes[c].countdown -= 1
        }
        sizes[c].tick &+= 1
        return (best, sizes[c].tick % LocalPathChooser.timedEvery == 0)
    }

    /// What a message of `length` bytes cost on way `k`. A faster sample is believed at once
    /// (noise here only ever adds time: a preempted rank, another job's cache traffic); a
    /// slower one moves the estimate an eighth of the way, and by at most twice the estimate,
    /// so one stall does not discard a way but a machine that changed is followed.
    mutating func record(length: Int, path k: LocalPathChoice, nanoseconds: UInt64) {
        guard length > 0 else { return }
        let c = LocalPathChooser.sizeClass(length)
        let v = max(Float(nanoseconds) * 1024 / Float(length), Float.leastNormalMagnitude)
        let e = sizes[c].cost[Int(k.rawValue)]
        sizes[c].cost[Int(k.rawValue)] = e == 0 || v < e ? v : e + (min(v, 2 * e) - e) / 8
        var best = LocalPathChoice.pull
        for i in 1..<3 where sizes[c].cost[i] != 0 && sizes[c].cost[i] < sizes[c].cost[Int(best.rawValue)] {
            best = LocalPathChoice(rawValue: UInt8(i))!
        }
        if best != sizes[c].best {
            sizes[c].best = best
            sizes[c].interval = LocalPathChooser.firstProbe
            sizes[c].countdown = LocalPathChooser.firstProbe
        }
    }

    /// The way chosen now for messages of `length` bytes, and what each way costs (ns/KiB; 0
    /// not measured), for reports and tests.
    func estimate(length: Int) -> (best: LocalPathChoice, pull: Float, split: Float, pieces: Float) {
        let s = sizes[LocalPathChooser.sizeClass(length)]
        return (s.best, s.cost[0], s.cost[1], s.cost[2])
    }
}

extension EndpointCore {
    /// The way a matched rendezvous of `length` bytes (`want` of them fit the receive) from
    /// peer `p` of this host moves, as the endpoint's `localPath` says.
    @inline(__always)
    mutating func localPathChoice(_ p: Int32, length: Int, want: Int, contiguous: Bool) -> (path: LocalPathChoice, timed: Bool) {
        let splittable = contiguous && want >= 2 * LocalPathChooser.splitUnit
        switch localPath {
        case .measured: return peers[Int(p)].paths.choose(length: want, alone: pulls.active == 0, splittable: splittable)
        case .pull: return (.pull, false)
        case .split: return (splittable ? .split : .pull, false)
        case .pieces(let limit): return (length <= limit ? .pieces : .pull, false)
        }
    }

    /// A receive starts a transfer that needs its sender (pieces, split, or over the wire).
    @inline(__always)
    mutating func markPulling(_ s: UnsafeMutablePointer<RequestSlot>) {
        s.pointee.flags |= RequestFlag.pulling
        pulls.active += 1
        pulls.started &+= 1
    }

    /// That transfer is over, however it ended.
    @inline(__always)
    mutating func clearPulling(_ s: UnsafeMutablePointer<RequestSlot>) {
        guard s.pointee.flags & RequestFlag.pulling != 0 else { return }
        s.pointee.flags &= ~RequestFlag.pulling
        pulls.active -= 1
    }

    /// Times receive `s` on way `k` from now (called once its transfer is marked).
    @inline(__always)
    mutating func startTiming(_ s: UnsafeMutablePointer<RequestSlot>, _ k: LocalPathChoice, alone: Bool) {
        // A way that needs the sender is timed fairly only if nothing else needed it at the start.
        guard !k.needsSender || alone else { return }
        s.pointee.pullPath = k.rawValue
        s.pointee.pullStarts = pulls.started
        s.pointee.pullCMA = pulls.cmaNanos
        s.pointee.pullStart = monotonicNanoseconds()
    }

    /// Receive `s` from peer `p` has all its bytes: what it took goes to the chooser, unless
    /// another transfer that needs a sender began meanwhile (the two shared the CPUs). The
    /// time this receiver spent on pulls of other messages meanwhile is not this one's.
    @inline(__always)
    mutating func stopTiming(_ s: UnsafeMutablePointer<RequestSlot>, peer p: Int32) {
        guard s.pointee.pullStart != 0 else { return }
        let start = s.pointee.pullStart
        s.pointee.pullStart = 0
        let k = LocalPathChoice(rawValue: s.pointee.pullPath)!
        guard !k.needsSender || s.pointee.pullStarts == pulls.started else { return }
        let others = k.needsSender ? pulls.cmaNanos &- s.pointee.pullCMA : 0
        let elapsed = monotonicNanoseconds() &- start
        guard elapsed > others else { return }
        peers[Int(p)].paths.record(length: s.pointee.pullWant, path: k, nanoseconds: elapsed - others)
    }

    // MARK: the split

    /// Receiver: asks the sender to write the back half of the message into the receive
    /// buffer, then reads the front half itself. False: no room toward the sender right now
    /// (the caller pulls it all instead). The receive completes when the sender's word that its
    /// half is written comes (`pushed`): only then may the buffer be given back, as the sender
    /// writes into it until then.
    mutating func requestSplit(_ r: Int32, from p: Int32, region: UInt32, generation: UInt32, offset: UInt64,
                               remote: UInt64, want: Int, token: UInt64, timed: Bool) -> Bool {
        let s = requests[r]
        let front = (want / 2) & ~(LocalPathChooser.splitUnit - 1)
        guard let cell = reserveRecord(Int(p), payload: RecordLayout.pushPayloadSize) else { return false }
        Record.write(cell, kind: .pushRequest, length: want, matchInfo: Record.token(r, s.pointee.generation), aux: token)
        Record.writeRegion(cell, region: region, generation: generation, offset: offset)
        Record.writePush(cell, from: front, into: UInt64(UInt(bitPattern: s.pointee.buffer!)) + UInt64(front))
        let alone = pulls.active == 0
        markPulling(s)
        if timed { startTiming(s, .split, alone: alone) }
        publishRecord(Int(p), cell)
        s.pointee.pullToken = token
        s.pointee.pullWant = want
        let done = pullRemote(s, pid: peers[Int(p)].pid, remote: remote, count: front)
        s.pointee.transferred = done
        if done != front { s.pointee.splitError = errno == 0 ? EIO : errno }
        count(.splitPulls)
        return true
    }

    /// Receiver: the sender's half is written (or it could not write it).
    mutating func receivePushed(_ r: Int32, from p: Int32, flags: UInt8, written: Int) {
        let s = requests[r]
        clearPulling(s)
        let front = s.pointee.transferred
        if flags & RecordFlags.refused != 0 || s.pointee.splitError != 0 {
            count(.refusedPulls)
            notify(p, token: s.pointee.pullToken, flags: RecordFlags.refused)
            let e = s.pointee.splitError
            return fail(r, MXError(e == ESRCH ? .peerClosed : .pullRefused,
                                   e != 0 ? "pulling the front \(front) bytes of a split message from pid \(peers[Int(p)].pid) failed: \(String(cString: strerror(e)))"
                                          : "the sender could not write the back half of its \(s.pointee.messageLength)-byte message",
                                   peer: e == ESRCH ? address(ofPeer: p) : nil))
        }
        guard front + written == s.pointee.pullWant else {
            return peerGone(p, reason: "wrote a back half of a split message that was not asked for")
        }
        stopTiming(s, peer: p)
        s.pointee.transferred = s.pointee.pullWant
        pulled(r, from: p, token: s.pointee.pullToken)
    }

    /// Sender: the receiver (a peer of this host) asks us to write the back of our message,
    /// from `from` on, into its memory at the address it names; checked as a pull is (our own
    /// region, as our rendezvous named it). Its own memory is the only one this can touch.
    mutating func servePush(_ p: Int32, _ cell: UnsafeMutableRawPointer, length want: Int) {
        let receiver = Record.matchInfo(cell)
        let (from, into) = Record.push(cell)
        guard peers[Int(p)].transport.isRing, !peers[Int(p)].isSelf, peers[Int(p)].pid != myPID, from <= UInt64(want) else {
            count(.refusedPulls)
            return reply(p, receiver, flags: RecordFlags.refused, written: 0)
        }
        guard let (_, source) = servedSend(p, cell, want: want) else { return }
        let n = want - Int(from)
        var done = 0
        while done < n {
            var local = iovec(iov_base: UnsafeMutableRawPointer(mutating: source + Int(from) + done), iov_len: n - done)
            var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(into) + UInt(done)), iov_len: n - done)
            let k = cmx_push(peers[Int(p)].pid, &local, 1, &remote, 1)
            if k <= 0 { break }
            done += k
        }
        if done == n { count(.splitPushes) } else { count(.refusedPulls) }
        reply(p, receiver, flags: RecordFlags.pushed | (done == n ? 0 : RecordFlags.refused), written: done)
    }
}
