#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// The wire transport: the reliable link toward each peer endpoint of another host, as a NIC's
/// firmware keeps it. A send window of sequenced frames kept until acked (go-back-N), handed
/// to the kernel in runs it cuts itself (UDP segmentation offload); the receive side's
/// sequence, acks, and records gathered from several frames. It knows links, frames and
/// bytes, not requests: the endpoint (`Frontend/EndpointWire.swift`) writes records into what
/// `reserve` gives, and handles the records `accept` hands back (docs/myrixen.md, "Between
/// hosts").

/// One frame of a link's send window: its head (in the link's head arena: the frame header,
/// and the whole record when it is small), then what follows it on the wire: a slice of a
/// record staged in a block, or a piece of the sender's own memory (a pull, without a copy).
struct WireFrame {
    var headLength = 0
    var body: UnsafeRawPointer?
    var bodyLength = 0
    /// The send request whose memory `body` points into, or -1.
    var owner: Int32 = -1
    /// A block this frame gives back once acked: the last frame of a staged record owns it
    /// (acks are cumulative: the record's earlier frames are acked by then), as does a kept
    /// copy of a piece.
    var block: UnsafeMutableRawPointer?
    var blockBytes = 0
    /// Flags that stay with the frame whenever it goes (`FrameFlags.continued`).
    var flags: UInt8 = 0

    var length: Int { headLength + bodyLength }
}

/// The reliable wire toward one peer endpoint of another host: a send window of sequenced
/// frames kept until acked (go-back-N), and the receive side's next expected sequence number.
struct WireLink {
    let peer: Int32
    let ipv4: UInt32
    let port: UInt16
    let peerSession: UInt32
    /// Bytes that may be in flight toward the peer (its receive buffer's share).
    let maxInFlightBytes: Int
    /// The largest frame toward the peer: what both hosts' links take unfragmented.
    let frameBytes: Int
    var frames: UnsafeMutablePointer<WireFrame>
    /// `MXWire.window` heads of `WireState.headBytes` each, one per frame slot.
    let heads: UnsafeMutableRawPointer
    /// Sequence numbers: [base, transmitNext) in flight, [transmitNext, nextSeq) queued.
    var nextSeq: UInt32 = 0
    var base: UInt32 = 0
    var transmitNext: UInt32 = 0
    /// Bytes of the frames in [base, transmitNext).
    var inFlightBytes = 0
    /// When the oldest unacked frame was last (re)sent, or acks last progressed.
    var timerStart: UInt64 = 0
    var resendInterval = MXWire.firstResendNanoseconds
    /// Set when a frame's bytes could not be kept (out of memory): the pair ends.
    var broken = false
    /// A record reserved in a block, cut into frames when committed.
    var staged: UnsafeMutableRawPointer?
    var stagedBytes = 0
    var stagedBlockBytes = 0
    /// Receive side.
    var expected: UInt32 = 0
    var ackOwed = 0
    var ackDue: UInt64 = 0
    /// The peer waits for an ack (it said `ack now`, or sent a frame out of sequence): the next
    /// scan sends it.
    var ackUrgent = false
    /// `ackEvery` frames are owed: the scan after next sends the ack, unless a data frame
    /// toward the peer took it along first (an answer to what just came, most often).
    var ackRipe = false
    /// A frame came after a lost one: the next frame toward the peer says so.
    var gap = false
    /// Resent at once on the peer's word of a gap, once per base.
    var fastResent = false
    /// A record longer than one frame, gathered as its frames arrive (in order), or handed
    /// over frame by frame (`streaming`: the endpoint copies each straight into the receive
    /// it matched, `streamOwner`).
    var assembly: UnsafeMutableRawPointer?
    var assembled = 0
    var streaming = false
    var streamOwner: Int32 = -1

    var unacked: Bool { base != nextSeq }

    /// A frame toward the peer carried the ack (and the gap flag): nothing is owed any more.
    @inline(__always)
    mutating func ackSent() {
        ackOwed = 0
        ackUrgent = false
        ackRipe = false
        gap = false
    }

    @inline(__always)
    func slot(_ seq: UInt32) -> UnsafeMutablePointer<WireFrame> { frames + Int(seq & UInt32(MXWire.window - 1)) }
    @inline(__always)
    func head(_ seq: UInt32) -> UnsafeMutableRawPointer { heads + Int(seq & UInt32(MXWire.window - 1)) * WireState.headBytes }
    /// Data bytes of one piece of a pull: a whole frame less its two headers.
    var pieceBytes: Int { frameBytes - FrameLayout.headerSize - RecordLayout.headerSize }
}

/// Testing knobs (`MXWire.dropEnvironment` and the two after it): one data frame in N, at
/// random, is lost on its way out, sent twice, or sent after the frames that follow it. Random,
/// as real losses are: a fixed period could line up with the resend cycle and lose the same
/// frame every time.
struct WireImpairment {
    var drop: UInt64 = 0
    var duplicate: UInt64 = 0
    var reorder: UInt64 = 0
    var state: UInt64 = 1
    /// The frame a batch stopped before, because it is to be lost.
    var dropNext = false

    /// The knobs this process's environment sets (none: no impairment).
    static func fromEnvironment() -> WireImpairment {
        func oneIn(_ name: String) -> UInt64 { getenv(name).flatMap { UInt64(String(cString: $0)) } ?? 0 }
        var i = WireImpairment()
        i.drop = oneIn(MXWire.dropEnvironment)
        i.duplicate = oneIn(MXWire.duplicateEnvironment)
        i.reorder = oneIn(MXWire.reorderEnvironment)
        i.state = UInt64(UInt32(bitPattern: getpid())) | 1
        return i
    }

    /// True one time in `n` (never for 0).
    @inline(__always)
    mutating func roll(_ n: UInt64) -> Bool {
        guard n > 0 else { return false }
        // xorshift64
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state % n == 0
    }
}

/// An endpoint's wire: its own UDP socket (granted by the backend at open), its links, the
/// blocks its staged records take, and the knobs it reads.
struct WireState {
    var fd: Int32 = -1
    var session: UInt32 = 0
    /// The largest frame this host's link takes (from the backend).
    var frameLimit = MXWire.minFrame
    /// Frames go to the kernel in runs it cuts itself (UDP_SEGMENT), and arrive coalesced
    /// (UDP_GRO); off (`MYRIXEN_WIRE_OFFLOAD=0`, or a kernel that cannot), runs of frames go
    /// in one sendmmsg and arrive one by one.
    var offload = true
    var links: UnsafeMutablePointer<WireLink>?
    var linkCount: Int32 = 0
    var linkByAddress: [UInt64: Int32] = [:]
    var receiveBuffer: UnsafeMutableRawPointer?
    /// Scratch for one batch: two iovecs per frame (head, body), and each frame's count.
    var iov: UnsafeMutablePointer<iovec>?
    var iovCounts: UnsafeMutablePointer<Int32>?
    /// Placeholder ring memory for peers of other hosts (never written: they have no rings).
    var inert: UnsafeMutableRawPointer?
    var smallPool: [UnsafeMutableRawPointer] = []
    var mediumPool: [UnsafeMutableRawPointer] = []
    var largePool: [UnsafeMutableRawPointer] = []
    var impair = WireImpairment()
    /// The endpoint's counters (its unprotected page).
    var counters: UnsafeMutableRawPointer?
    /// The largest frame received so far (the tests check it against the MTU).
    var largestFrame = 0
    var quietPasses = 0
    var lastScan: UInt64 = 0
    /// A link has a ripe ack: the next pass scans whatever its clock says.
    var scanSoon = false
    var lastPoll: UInt64 = 0
    var lastTraffic: UInt64 = 0

    /// One receive: a datagram, or a coalesced run of them (at most an IPv4 datagram's bytes).
    static let receiveCapacity = 65_536
    /// A frame's head: frame header, record header and up to `inlineData` bytes of a small
    /// record's data.
    static let headBytes = 128
    static let inlineData = headBytes - FrameLayout.headerSize - RecordLayout.headerSize
    /// Records too long for a head are staged in blocks of one of three sizes, from the
    /// endpoint's pools (no allocation per message, and no link keeps its own buffers); a block
    /// goes back once the frames that carry it are acked. A medium block holds any frame's
    /// piece of a pull (a frame is at most an IPv4 datagram); a large one the longest eager
    /// record. Each pool keeps at most `poolBlocks` idle, the large one `largePoolBlocks`.
    static let smallBlock = 4096
    static let mediumBlock = RecordLayout.headerSize + 65_536
    static let largeBlock = RecordLayout.headerSize + MXLimits.rendezvousThresholdRemote
    static let poolBlocks = 128
    static let largePoolBlocks = 16
    /// The longest record gathered from several frames: an eager message up to the wire's
    /// rendezvous threshold.
    static let assemblyBytes = RecordLayout.headerSize + MXLimits.rendezvousThresholdRemote
    /// Passes that skip the socket (and the clock) after it was found empty, while idle.
    static let quietSkip = 15
    static let idleAfterNanoseconds: UInt64 = 200_000
    static let idlePollNanoseconds: UInt64 = 20_000
    static let scanNanoseconds: UInt64 = 100_000
    static let inertCells = 64

    static func addressKey(_ ip: UInt32, _ port: UInt16) -> UInt64 { UInt64(ip) << 16 | UInt64(port) }

    @inline(__always)
    func count(_ c: MXCounter, _ n: Int = 1) {
        if let page = counters { c.add(n, in: page) }
    }

    /// A block of at least `bytes` (at most `largeBlock`), and its size; nil when out of memory.
    @inline(__always)
    mutating func takeBlock(_ bytes: Int) -> (UnsafeMutableRawPointer, Int)? {
        if bytes <= WireState.smallBlock {
            guard let b = smallPool.popLast() ?? malloc(WireState.smallBlock) else { return nil }
            return (b, WireState.smallBlock)
        }
        if bytes <= WireState.mediumBlock {
            guard let b = mediumPool.popLast() ?? malloc(WireState.mediumBlock) else { return nil }
            return (b, WireState.mediumBlock)
        }
        guard let b = largePool.popLast() ?? malloc(WireState.largeBlock) else { return nil }
        return (b, WireState.largeBlock)
    }

    @inline(__always)
    mutating func giveBlock(_ b: UnsafeMutableRawPointer, _ bytes: Int) {
        if bytes == WireState.smallBlock && smallPool.count < WireState.poolBlocks {
            smallPool.append(b)
        } else if bytes == WireState.mediumBlock && mediumPool.count < WireState.poolBlocks {
            mediumPool.append(b)
        } else if bytes == WireState.largeBlock && largePool.count < WireState.largePoolBlocks {
            largePool.append(b)
        } else {
            free(b)
        }
    }

    mutating func destroy() {
        if let l = links {
            for i in 0..<Int(linkCount) {
                for f in 0..<MXWire.window { free(l[i].frames[f].block) }
                l[i].frames.deallocate()
                l[i].heads.deallocate()
                free(l[i].assembly)
            }
            l.deallocate()
        }
        for b in smallPool { free(b) }
        for b in mediumPool { free(b) }
        for b in largePool { free(b) }
        smallPool.removeAll()
        mediumPool.removeAll()
        largePool.removeAll()
        iov?.deallocate()
        iovCounts?.deallocate()
        free(receiveBuffer)
        free(inert)
        closeDescriptor(fd)
        fd = -1
    }
}

extension WireState {
    // MARK: sending

    /// Free frame slots of link `l`'s window, and how many frames a record of `recordBytes`
    /// (header and data) takes on it.
    @inline(__always)
    func room(_ link: UnsafeMutablePointer<WireLink>, recordBytes: Int) -> (free: UInt32, needed: UInt32) {
        let chunk = link.pointee.frameBytes - FrameLayout.headerSize
        return (UInt32(MXWire.window) &- (link.pointee.nextSeq &- link.pointee.base), UInt32((recordBytes + chunk - 1) / chunk))
    }

    /// Room for a record of `payload` bytes of data toward link `l`; nil when the window (or
    /// memory) has none. A small record is written in the next frame's head; a longer one in a
    /// block, cut into frames of the link's size when committed.
    @inline(__always)
    mutating func reserve(_ l: Int32, payload: Int) -> UnsafeMutableRawPointer? {
        let link = links! + Int(l)
        let recordBytes = RecordLayout.headerSize + payload
        let (free, needed) = room(link, recordBytes: recordBytes)
        if FrameLayout.headerSize + recordBytes <= WireState.headBytes {
            guard free >= 1 else { return nil }
            let seq = link.pointee.nextSeq
            let f = link.pointee.slot(seq)
            let h = link.pointee.head(seq)
            Frame.stamp(h, .data, source: session, target: link.pointee.peerSession, sequence: seq)
            f.pointee.headLength = FrameLayout.headerSize + recordBytes
            f.pointee.body = nil
            f.pointee.bodyLength = 0
            f.pointee.owner = -1
            f.pointee.flags = 0
            link.pointee.staged = nil
            return h + FrameLayout.headerSize
        }
        guard recordBytes <= WireState.largeBlock, needed <= free, let (block, size) = takeBlock(recordBytes) else { return nil }
        link.pointee.staged = block
        link.pointee.stagedBytes = recordBytes
        link.pointee.stagedBlockBytes = size
        return block
    }

    /// The reserved record is filled: its frames join the window and go out as it allows
    /// (with `pump` false, once the caller has queued what else it has: a batch of them).
    @inline(__always)
    mutating func commit(_ l: Int32, pump: Bool = true) {
        let link = links! + Int(l)
        if let block = link.pointee.staged {
            link.pointee.staged = nil
            cut(link, UnsafeRawPointer(block), link.pointee.stagedBytes, headerInHead: false, block, link.pointee.stagedBlockBytes)
        } else {
            startTimerIfIdle(link)
            link.pointee.nextSeq &+= 1
        }
        if pump { self.pump(l) }
    }

    /// Room for an eager record whose `payload` bytes of data its frames will carry straight
    /// from the sender's memory (`commitDirect`): the record header goes in the first frame's
    /// head. nil when the window (or memory) has none.
    @inline(__always)
    mutating func reserveDirect(_ l: Int32, payload: Int) -> UnsafeMutableRawPointer? {
        let link = links! + Int(l)
        let (free, needed) = room(link, recordBytes: RecordLayout.headerSize + payload)
        guard payload <= WireState.largeBlock, needed <= free, let (block, size) = takeBlock(payload) else { return nil }
        link.pointee.staged = block
        link.pointee.stagedBlockBytes = size
        return link.pointee.head(link.pointee.nextSeq) + FrameLayout.headerSize
    }

    /// The record reserved by `reserveDirect` goes out, its data read from `data` by the kernel
    /// as the frames are sent; then the data is copied into the record's block and the frames
    /// carry that copy (for resends), so `data` is free again when this returns. The copy
    /// happens while the receiver already takes the frames: the sender's copy is off the
    /// message's path.
    @inline(__always)
    mutating func commitDirect(_ l: Int32, data: UnsafeRawPointer, length: Int) {
        let link = links! + Int(l)
        let block = link.pointee.staged!
        link.pointee.staged = nil
        let first = link.pointee.nextSeq
        cut(link, data, length, headerInHead: true, block, link.pointee.stagedBlockBytes)
        pump(l)
        block.copyMemory(from: data, byteCount: length)
        var s = first
        while s != link.pointee.nextSeq {
            let f = link.pointee.slot(s)
            f.pointee.body = UnsafeRawPointer(block + data.distance(to: f.pointee.body!))
            s &+= 1
        }
    }

    /// The oldest unacked frame is about to be the next one: its resend timer starts.
    @inline(__always)
    func startTimerIfIdle(_ link: UnsafeMutablePointer<WireLink>) {
        guard !link.pointee.unacked else { return }
        link.pointee.timerStart = monotonicNanoseconds()
        link.pointee.resendInterval = MXWire.firstResendNanoseconds
    }

    /// Cuts `length` bytes at `bytes` into the link's next frames: each a frame header, then
    /// its slice, the first frame's head also holding the record header when `headerInHead`
    /// (written there by the caller); every frame but the last `continued`, the last owning
    /// `block` (given back once acked).
    @inline(__always)
    func cut(_ link: UnsafeMutablePointer<WireLink>, _ bytes: UnsafeRawPointer, _ length: Int, headerInHead: Bool,
             _ block: UnsafeMutableRawPointer, _ blockBytes: Int) {
        startTimerIfIdle(link)
        let chunk = link.pointee.frameBytes - FrameLayout.headerSize
        var offset = 0
        var first = headerInHead
        while offset < length {
            let seq = link.pointee.nextSeq
            let f = link.pointee.slot(seq)
            Frame.stamp(link.pointee.head(seq), .data, source: session, target: link.pointee.peerSession, sequence: seq)
            f.pointee.headLength = FrameLayout.headerSize + (first ? RecordLayout.headerSize : 0)
            let n = min(chunk - (first ? RecordLayout.headerSize : 0), length - offset)
            first = false
            offset += n
            let last = offset == length
            f.pointee.body = bytes + offset - n
            f.pointee.bodyLength = n
            f.pointee.owner = -1
            f.pointee.flags = last ? 0 : FrameFlags.continued
            f.pointee.block = last ? block : nil
            f.pointee.blockBytes = last ? blockBytes : 0
            link.pointee.nextSeq &+= 1
        }
    }

    /// Lets the frame just reserved on link `l` carry `length` bytes of the sender's own memory
    /// after its record, without a copy (a piece of a pull, from the send request `owner`).
    @inline(__always)
    mutating func attach(_ l: Int32, _ data: UnsafeRawPointer, _ length: Int, owner: Int32) {
        let link = links! + Int(l)
        let f = link.pointee.slot(link.pointee.nextSeq)
        f.pointee.body = data
        f.pointee.bodyLength = length
        f.pointee.owner = owner
    }

    /// Sends queued frames while fewer than `maxInFlight` frames, and no more bytes than the
    /// peer's share, are unacked (always at least one): in batches, each one system call.
    @inline(__always)
    mutating func pump(_ l: Int32) {
        let link = links! + Int(l)
        while link.pointee.transmitNext != link.pointee.nextSeq
                && link.pointee.transmitNext &- link.pointee.base < MXWire.maxInFlight {
            let first = link.pointee.transmitNext
            let firstSize = link.pointee.slot(first).pointee.length
            let inFlight = link.pointee.inFlightBytes
            guard inFlight == 0 || inFlight + firstSize <= link.pointee.maxInFlightBytes else { return }
            if impair.drop > 0 && (impair.dropNext || impair.roll(impair.drop)) {
                // Lost on its way: it counts as sent.
                impair.dropNext = false
                link.pointee.inFlightBytes += firstSize
                link.pointee.transmitNext &+= 1
                count(.framesSent)
                continue
            }
            // The batch: with offload, frames of the link's frame size ended by at most one
            // shorter (the kernel cuts the run where we would); without, any frames.
            var frames = 1
            var bytes = firstSize
            var seq = first &+ 1
            var previous = firstSize
            while seq != link.pointee.nextSeq && seq &- link.pointee.base < MXWire.maxInFlight
                    && frames < MXWire.maxBatchFrames && (!offload || previous == link.pointee.frameBytes) {
                let size = link.pointee.slot(seq).pointee.length
                guard inFlight + bytes + size <= link.pointee.maxInFlightBytes, bytes + size <= MXWire.maxBatchBytes else { break }
                if impair.drop > 0 && impair.roll(impair.drop) {
                    impair.dropNext = true
                    break
                }
                frames += 1
                bytes += size
                previous = size
                seq &+= 1
            }
            // The last frame the limits let out while more wait asks for an ack at once (the
            // receiver would otherwise wait for four frames or 1 ms).
            let blocks = seq != link.pointee.nextSeq
                && (seq &- link.pointee.base >= MXWire.maxInFlight
                    || inFlight + bytes + link.pointee.slot(seq).pointee.length > link.pointee.maxInFlightBytes)
            let sent = transmitBatch(link, first, frames, ackNow: blocks)
            if sent < 0 { continue } // the kernel cannot cut runs: offload is off now, try again
            guard sent > 0 else { return }
            var done = bytes
            if sent < frames {
                done = 0
                for i in 0..<sent { done += link.pointee.slot(first &+ UInt32(i)).pointee.length }
            }
            link.pointee.inFlightBytes += done
            link.pointee.transmitNext &+= UInt32(sent)
            count(.framesSent, sent)
            count(.frameSends)
            lastTraffic = monotonicNanoseconds()
            link.pointee.ackSent()
        }
    }

    /// Sends `frames` frames of the window from `first` with the link's current ack: one
    /// system call (a run the kernel cuts, or several datagrams). Returns how many went (0 when
    /// the socket would block or failed), or -1 when the kernel cannot cut runs (offload is
    /// then turned off).
    @inline(__always)
    mutating func transmitBatch(_ link: UnsafeMutablePointer<WireLink>, _ first: UInt32, _ frames: Int, ackNow: Bool) -> Int {
        let iov = iov!
        let counts = iovCounts!
        let ack = link.pointee.expected
        let gap: UInt8 = link.pointee.gap ? FrameFlags.gap : 0
        var v = 0
        for i in 0..<frames {
            let seq = first &+ UInt32(i)
            let f = link.pointee.slot(seq)
            let h = link.pointee.head(seq)
            Frame.setAck(h, ack, flags: f.pointee.flags | gap | (ackNow && i == frames - 1 ? FrameFlags.ackNow : 0))
            iov[v] = iovec(iov_base: h, iov_len: f.pointee.headLength)
            counts[i] = 1
            v += 1
            if let body = f.pointee.body, f.pointee.bodyLength > 0 {
                iov[v] = iovec(iov_base: UnsafeMutableRawPointer(mutating: body), iov_len: f.pointee.bodyLength)
                counts[i] = 2
                v += 1
            }
        }
        let fd = fd, ip = link.pointee.ipv4, port = link.pointee.port
        var skip = 0
        if frames >= 2 && impair.reorder > 0 && impair.roll(impair.reorder) {
            // Testing: the first frame goes after the rest.
            skip = 1
        }
        let rest = UnsafePointer(iov + Int(counts[0]) * skip)
        let restIov = v - Int(counts[0]) * skip
        let sent: Int
        if frames - skip == 1 {
            sent = cmx_udp_sendv(fd, ip, port, rest, Int32(restIov), 0) >= 0 ? 1 : 0
        } else if offload {
            if cmx_udp_sendv(fd, ip, port, rest, Int32(restIov), Int32(link.pointee.frameBytes)) >= 0 {
                sent = frames - skip
            } else if errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP {
                offload = false
                return -1
            } else {
                sent = 0
            }
        } else {
            sent = max(0, Int(cmx_udp_sendmany(fd, ip, port, rest, counts + skip, Int32(frames - skip))))
        }
        if skip == 1 {
            guard sent == frames - 1 else { return 0 }
            // Sent late, or lost when the socket is full: either way the window resends it.
            _ = cmx_udp_sendv(fd, ip, port, iov, counts[0], 0)
            return frames
        }
        if sent > 0 && impair.duplicate > 0 && impair.roll(impair.duplicate) {
            _ = cmx_udp_sendv(fd, ip, port, iov, counts[0], 0)
        }
        return sent
    }

    /// An ack-only frame (no sequence number); the link owes no ack any more.
    mutating func sendAck(_ l: Int32) {
        let link = links! + Int(l)
        var header = (UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &header) { h in
            Frame.stamp(h.baseAddress!, .ack, source: session, target: link.pointee.peerSession)
            Frame.setAck(h.baseAddress!, link.pointee.expected, flags: link.pointee.gap ? FrameFlags.gap : 0)
            guard cmx_udp_send(fd, link.pointee.ipv4, link.pointee.port, h.baseAddress!, FrameLayout.headerSize, nil, 0) >= 0 else { return }
            lastTraffic = monotonicNanoseconds()
            link.pointee.ackSent()
        }
    }

    /// Go-back-N: everything from the oldest unacked frame goes again (the pump sends it).
    @inline(__always)
    mutating func goBack(_ link: UnsafeMutablePointer<WireLink>, now: UInt64) {
        count(.resentFrames, Int(link.pointee.transmitNext &- link.pointee.base))
        link.pointee.transmitNext = link.pointee.base
        link.pointee.inFlightBytes = 0
        link.pointee.timerStart = now
    }

    /// Forgets what a frame of the window holds, giving back its block.
    @inline(__always)
    mutating func clearFrame(_ f: UnsafeMutablePointer<WireFrame>) {
        if let b = f.pointee.block {
            giveBlock(b, f.pointee.blockBytes)
            f.pointee.block = nil
        }
        f.pointee.body = nil
        f.pointee.bodyLength = 0
        f.pointee.owner = -1
    }

    /// Frees the frames the peer acknowledged (all before `ack`).
    @inline(__always)
    mutating func applyAck(_ l: Int32, _ ack: UInt32, now: UInt64) {
        let link = links! + Int(l)
        let newly = ack &- link.pointee.base
        guard newly != 0, newly <= link.pointee.nextSeq &- link.pointee.base else { return }
        var seq = link.pointee.base
        while seq != ack {
            let f = link.pointee.slot(seq)
            if Int32(bitPattern: seq &- link.pointee.transmitNext) < 0 {
                link.pointee.inFlightBytes -= f.pointee.length
            }
            clearFrame(f)
            seq &+= 1
        }
        link.pointee.base = ack
        if Int32(bitPattern: link.pointee.transmitNext &- ack) < 0 { link.pointee.transmitNext = ack }
        link.pointee.timerStart = now
        link.pointee.resendInterval = MXWire.firstResendNanoseconds
        link.pointee.fastResent = false
    }

    // MARK: receiving

    /// A frame of link `l` (its source checked): its ack applied, then, for a data frame in
    /// sequence, its record, or nothing while a record longer than a frame is still being
    /// gathered. Frames out of sequence are dropped (and acked); `malformed` ends the pair.
    @inline(__always)
    mutating func accept(_ l: Int32, _ f: UnsafeMutableRawPointer, length n: Int, now: UInt64) -> WireArrival {
        let link = links! + Int(l)
        guard Frame.source(f) == link.pointee.peerSession, Frame.target(f) == session else {
            count(.drops)
            return .nothing
        }
        count(.framesReceived)
        let ack = Frame.ack(f)
        let flags = Frame.flags(f)
        applyAck(l, ack, now: now)
        if flags & FrameFlags.gap != 0 && ack == link.pointee.base
            && link.pointee.transmitNext != link.pointee.base && !link.pointee.fastResent {
            // The peer lost a frame: go back to it now (once for this base; the timer covers
            // a lost resend).
            goBack(link, now: now)
            link.pointee.fastResent = true
        }
        guard Frame.type(f) == FrameType.data.rawValue else { return .nothing }
        let seq = Frame.sequence(f)
        guard seq == link.pointee.expected else {
            // A duplicate (our ack was lost) or a frame after a lost one: say where we are.
            count(.drops)
            if Int32(bitPattern: seq &- link.pointee.expected) > 0 { link.pointee.gap = true }
            link.pointee.ackOwed = max(link.pointee.ackOwed, 1)
            link.pointee.ackUrgent = true
            return .nothing
        }
        link.pointee.expected &+= 1
        if link.pointee.ackOwed == 0 { link.pointee.ackDue = now + MXWire.ackDelayNanoseconds }
        link.pointee.ackOwed += 1
        if flags & FrameFlags.ackNow != 0 { link.pointee.ackUrgent = true }
        let cell = f + FrameLayout.headerSize
        let recordBytes = n - FrameLayout.headerSize
        let continued = flags & FrameFlags.continued != 0
        if link.pointee.streaming {
            if !continued { link.pointee.streaming = false }
            return .more(cell, recordBytes, last: !continued)
        }
        if link.pointee.assembled > 0 { return gather(link, cell, recordBytes, last: !continued) }
        // The first frame of a record longer than a frame: the endpoint streams it or has
        // it gathered.
        return continued ? .first(cell, recordBytes) : .record(cell, recordBytes)
    }

    /// The rest of the record whose first frame `accept` just gave goes to the endpoint frame
    /// by frame (`.more`), for the owner it names.
    mutating func stream(_ l: Int32, owner: Int32) {
        links![Int(l)].streaming = true
        links![Int(l)].streamOwner = owner
    }

    /// The record whose first frame (`cell`, `bytes`) `accept` just gave is gathered: the
    /// record comes whole (`.record`) with its last frame.
    mutating func beginGathering(_ l: Int32, _ cell: UnsafeMutableRawPointer, _ bytes: Int) -> WireArrival {
        gather(links! + Int(l), cell, bytes, last: false)
    }

    @inline(__always)
    mutating func gather(_ link: UnsafeMutablePointer<WireLink>, _ cell: UnsafeMutableRawPointer, _ recordBytes: Int, last: Bool) -> WireArrival {
        guard recordBytes > 0, link.pointee.assembled + recordBytes <= WireState.assemblyBytes else {
            return .malformed("sent a malformed frame")
        }
        if link.pointee.assembly == nil {
            guard let a = malloc(WireState.assemblyBytes) else {
                return .malformed("could not be served: out of memory gathering a long record")
            }
            link.pointee.assembly = a
        }
        (link.pointee.assembly! + link.pointee.assembled).copyMemory(from: cell, byteCount: recordBytes)
        link.pointee.assembled += recordBytes
        guard last else { return .nothing }
        let whole = link.pointee.assembled
        link.pointee.assembled = 0
        return .record(link.pointee.assembly!, whole)
    }

    /// Link `l`'s timers: the ack it owes, a resend of what was not acked in time, frames
    /// still queued.
    @inline(__always)
    mutating func tick(_ l: Int32, now: UInt64) {
        let link = links! + Int(l)
        if link.pointee.ackOwed > 0 {
            if link.pointee.ackUrgent || link.pointee.ackRipe || now >= link.pointee.ackDue {
                sendAck(l)
            } else if link.pointee.ackOwed >= MXWire.ackEvery {
                link.pointee.ackRipe = true
                scanSoon = true
            }
        }
        guard link.pointee.unacked else { return }
        if now > link.pointee.timerStart && now - link.pointee.timerStart > link.pointee.resendInterval {
            goBack(link, now: now)
            link.pointee.resendInterval = min(link.pointee.resendInterval * 2, MXWire.maxResendNanoseconds)
        }
        if link.pointee.transmitNext != link.pointee.nextSeq { pump(l) }
    }

    /// Frames of link `l` still unacked that point into memory of the send request `owner`
    /// get a copy of their bytes in a block: that memory may go once the request ends. Out of
    /// memory, the link is broken (the pair ends).
    mutating func keepCopies(_ l: Int32, owner r: Int32) {
        let link = links! + Int(l)
        var seq = link.pointee.base
        while seq != link.pointee.nextSeq {
            let f = link.pointee.slot(seq)
            if f.pointee.owner == r, let data = f.pointee.body {
                if let (block, size) = takeBlock(f.pointee.bodyLength) {
                    block.copyMemory(from: data, byteCount: f.pointee.bodyLength)
                    f.pointee.body = UnsafeRawPointer(block)
                    f.pointee.block = block
                    f.pointee.blockBytes = size
                } else {
                    // No memory for the copy: this frame can never go again; the pair ends.
                    link.pointee.broken = true
                    f.pointee.body = nil
                }
                f.pointee.owner = -1
            }
            seq &+= 1
        }
    }

    /// Link `l`'s peer is gone: nothing of it is sent again.
    mutating func drop(_ l: Int32) {
        let link = links! + Int(l)
        var seq = link.pointee.base
        while seq != link.pointee.nextSeq {
            clearFrame(link.pointee.slot(seq))
            seq &+= 1
        }
        link.pointee.base = link.pointee.nextSeq
        link.pointee.transmitNext = link.pointee.nextSeq
        link.pointee.inFlightBytes = 0
        link.pointee.ackSent()
        link.pointee.assembled = 0
        link.pointee.streaming = false
    }
}

/// What a frame brought (`WireState.accept`).
enum WireArrival {
    case nothing
    /// A whole record: its 32-byte header at the pointer, header and data `Int` bytes.
    case record(UnsafeMutableRawPointer, Int)
    /// The first frame of a record longer than a frame (its header and first bytes): the
    /// endpoint calls `stream` or `beginGathering` before the next frame of the link.
    case first(UnsafeMutableRawPointer, Int)
    /// The next bytes of a streamed record, and whether they are its last.
    case more(UnsafeMutableRawPointer, Int, last: Bool)
    /// The peer sent what no peer of ours may: the pair ends, for this reason.
    case malformed(String)
}
