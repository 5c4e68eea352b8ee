#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// One frame of a link's send window: its bytes (frame header, record, eager data), and for a
/// piece of a pull, the sender's own memory it carries without a copy.
struct WireFrame {
    var buffer: UnsafeMutableRawPointer?
    var capacity = 0
    var length = 0
    var external: UnsafeRawPointer?
    var externalLength = 0
    /// The send request whose memory `external` points into.
    var owner: Int32 = -1
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
    var frames: UnsafeMutablePointer<WireFrame>
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
    /// Receive side.
    var expected: UInt32 = 0
    var ackOwed = 0
    var ackDue: UInt64 = 0
    /// A frame came after a lost one: the next frame toward the peer says so.
    var gap = false
    /// Resent at once on the peer's word of a gap, once per base.
    var fastResent = false

    var unacked: Bool { base != nextSeq }
}

/// An endpoint's wire: its own UDP socket (granted by the backend at open), its links, the
/// pulls it serves and those it waits to ask for.
struct WireState {
    var fd: Int32 = -1
    var session: UInt32 = 0
    var links: UnsafeMutablePointer<WireLink>?
    var linkCount: Int32 = 0
    var linkByAddress: [UInt64: Int32] = [:]
    var receiveBuffer: UnsafeMutableRawPointer?
    /// Placeholder ring memory for peers of other hosts (never written: they have no rings).
    var inert: UnsafeMutableRawPointer?
    var largePool: [UnsafeMutableRawPointer] = []
    /// Lost-frame testing: one data frame in N, at random, is not sent (`MYRIXEN_WIRE_DROP`).
    /// Random, as real losses are: a fixed period could line up with the resend cycle and
    /// lose the same frame every time.
    var quietPasses = 0
    var lastScan: UInt64 = 0
    var lastPoll: UInt64 = 0
    var lastTraffic: UInt64 = 0
    var dropEvery: UInt64 = 0
    var dropState: UInt64 = 0

    static let receiveCapacity = 65_536
    /// Frames of up to `smallFrame` bytes keep their buffer in their window slot; larger ones
    /// take a block of `largeBlock` bytes from the endpoint's pool and give it back once
    /// acked (no allocation per message, and no link keeps 256 large buffers). The pool keeps
    /// at most `poolBlocks` idle blocks.
    static let smallFrame = 4096
    static let largeBlock = FrameLayout.maxSize
    static let poolBlocks = 128
    /// Passes that skip the socket (and the clock) after it was found empty, while idle.
    static let quietSkip = 15
    static let idleAfterNanoseconds: UInt64 = 200_000
    static let idlePollNanoseconds: UInt64 = 20_000
    static let scanNanoseconds: UInt64 = 100_000
    static let inertCells = 64

    static func addressKey(_ ip: UInt32, _ port: UInt16) -> UInt64 { UInt64(ip) << 16 | UInt64(port) }

    mutating func destroy() {
        if let l = links {
            for i in 0..<Int(linkCount) {
                for f in 0..<MXWire.window { free(l[i].frames[f].buffer) }
                l[i].frames.deallocate()
            }
            l.deallocate()
        }
        for b in largePool { free(b) }
        largePool.removeAll()
        free(receiveBuffer)
        free(inert)
        closeDescriptor(fd)
        fd = -1
    }
}

extension EndpointCore {
    // MARK: links

    /// Adds a peer of another host: its data path is the link, its rings are placeholders.
    mutating func attachRemote(_ g: RemotePeer) -> Int32 {
        if wire.links == nil {
            wire.links = .allocate(capacity: MXLimits.maxPeers)
            wire.receiveBuffer = malloc(WireState.receiveCapacity)
            wire.inert = calloc(1, RingLayout.headerPage + WireState.inertCells * RingLayout.cellSize)
            formatRing(wire.inert!, dataBytes: WireState.inertCells * RingLayout.cellSize)
            wire.session = Shm.load(protectedPage, ProtectedPage.sessionOffset, as: UInt32.self)
            wire.largePool.reserveCapacity(WireState.poolBlocks)
            wire.dropEvery = getenv(MXWire.dropEnvironment).flatMap { UInt64(String(cString: $0)) } ?? 0
            wire.dropState = UInt64(UInt32(bitPattern: getpid())) | 1
        }
        let p = peerCount
        let l = wire.linkCount
        let frames = UnsafeMutablePointer<WireFrame>.allocate(capacity: MXWire.window)
        frames.initialize(repeating: WireFrame(), count: MXWire.window)
        (wire.links! + Int(l)).initialize(to: WireLink(
            peer: p, ipv4: g.ipv4, port: g.port, peerSession: g.session,
            maxInFlightBytes: max(Int(g.receiveBuffer) / MXWire.inFlightShareOfReceiveBuffer, 2 * FrameLayout.maxSize),
            frames: frames))
        wire.linkCount += 1
        wire.linkByAddress[WireState.addressKey(g.ipv4, g.port)] = l
        let inert = wire.inert!
        (peers + Int(p)).initialize(to: Peer(
            nicID: g.nicID, endpointID: g.endpoint, session: g.session, pid: 0, alive: true, isSelf: false,
            out: RingProducer(base: inert, cells: WireState.inertCells),
            inbound: RingConsumer(base: inert, cells: WireState.inertCells),
            peerProtected: UnsafeRawPointer(inert), peerUnprotected: UnsafeRawPointer(inert),
            eventFD: -1, mappings: [],
            eagerMax: min(MXLimits.rendezvousThresholdRemote, MXWire.maxFrameData), link: l))
        peerCount += 1
        return p
    }

    // MARK: sending frames

    /// Room for a record in the next frame of link `l`; nil when the window is full.
    @inline(__always)
    mutating func wireReserve(_ l: Int32, payload: Int) -> UnsafeMutableRawPointer? {
        let link = wire.links! + Int(l)
        guard link.pointee.nextSeq &- link.pointee.base < UInt32(MXWire.window) else { return nil }
        let f = link.pointee.frames + Int(link.pointee.nextSeq & UInt32(MXWire.window - 1))
        let size = FrameLayout.headerSize + RecordLayout.headerSize + payload
        if f.pointee.capacity < size {
            if size > WireState.smallFrame {
                guard let block = wire.largePool.popLast() ?? malloc(WireState.largeBlock) else { return nil }
                free(f.pointee.buffer)
                f.pointee.buffer = block
                f.pointee.capacity = WireState.largeBlock
            } else {
                guard let b = realloc(f.pointee.buffer, WireState.smallFrame) else { return nil }
                f.pointee.buffer = b
                f.pointee.capacity = WireState.smallFrame
            }
        }
        let b = f.pointee.buffer!
        stampHeader(b, .data, link)
        Shm.store(b, FrameLayout.sequenceOffset, link.pointee.nextSeq)
        f.pointee.length = size
        f.pointee.external = nil
        f.pointee.externalLength = 0
        f.pointee.owner = -1
        return b + FrameLayout.headerSize
    }

    /// A frame header's fixed part: who to whom.
    @inline(__always)
    func stampHeader(_ b: UnsafeMutableRawPointer, _ type: FrameType, _ link: UnsafeMutablePointer<WireLink>) {
        Shm.store(b, FrameLayout.magicOffset, FrameLayout.magic)
        Shm.store(b, FrameLayout.typeOffset, type.rawValue)
        Shm.store(b, FrameLayout.versionOffset, FrameLayout.version)
        Shm.store(b, FrameLayout.sourceSessionOffset, wire.session)
        Shm.store(b, FrameLayout.targetSessionOffset, link.pointee.peerSession)
    }

    /// Sends a frame with the link's current ack (and gap flag, and `extraFlags`); on success
    /// the link owes no ack any more. The testing knob may drop data frames here.
    @inline(__always)
    mutating func sendFrame(_ link: UnsafeMutablePointer<WireLink>, _ b: UnsafeMutableRawPointer, _ length: Int,
                            _ external: UnsafeRawPointer?, _ externalLength: Int, droppable: Bool,
                            extraFlags: UInt8 = 0) -> Bool {
        Shm.store(b, FrameLayout.ackOffset, link.pointee.expected)
        Shm.store(b, FrameLayout.flagsOffset, (link.pointee.gap ? FrameFlags.gap : 0) | extraFlags)
        var lost = false
        if droppable && wire.dropEvery > 0 {
            // xorshift64
            wire.dropState ^= wire.dropState << 13
            wire.dropState ^= wire.dropState >> 7
            wire.dropState ^= wire.dropState << 17
            lost = wire.dropState % wire.dropEvery == 0
        }
        guard lost || cmx_udp_send(wire.fd, link.pointee.ipv4, link.pointee.port, b, length, external, externalLength) >= 0 else {
            return false
        }
        wire.lastTraffic = monotonicNanoseconds()
        link.pointee.ackOwed = 0
        link.pointee.gap = false
        return true
    }

    /// The reserved frame is filled: it joins the window and goes out if the window allows.
    @inline(__always)
    mutating func wireCommit(_ l: Int32) {
        let link = wire.links! + Int(l)
        if !link.pointee.unacked {
            link.pointee.timerStart = monotonicNanoseconds()
            link.pointee.resendInterval = MXWire.firstResendNanoseconds
        }
        link.pointee.nextSeq &+= 1
        wirePump(l)
    }

    /// Sends queued frames while fewer than `maxInFlight` frames, and no more bytes than the
    /// peer's share, are unacked (always at least one).
    @inline(__always)
    mutating func wirePump(_ l: Int32) {
        let link = wire.links! + Int(l)
        while link.pointee.transmitNext != link.pointee.nextSeq
                && link.pointee.transmitNext &- link.pointee.base < MXWire.maxInFlight {
            let seq = link.pointee.transmitNext
            let size = frameSize(link, seq)
            guard link.pointee.inFlightBytes == 0 || link.pointee.inFlightBytes + size <= link.pointee.maxInFlightBytes else { return }
            // The last frame the limits let out while more wait asks for an ack at once (the
            // receiver would otherwise wait for four frames or 1 ms).
            let next = seq &+ 1
            let blocks = next != link.pointee.nextSeq
                && (next &- link.pointee.base >= MXWire.maxInFlight
                    || link.pointee.inFlightBytes + size + frameSize(link, next) > link.pointee.maxInFlightBytes)
            guard transmit(l, seq, ackNow: blocks) else { return }
            link.pointee.inFlightBytes += size
            link.pointee.transmitNext &+= 1
        }
    }

    @inline(__always)
    func frameSize(_ link: UnsafeMutablePointer<WireLink>, _ seq: UInt32) -> Int {
        let f = link.pointee.frames + Int(seq & UInt32(MXWire.window - 1))
        return f.pointee.length + f.pointee.externalLength
    }

    /// Sends one frame of the window, with the current ack. False when the socket would block
    /// (or failed): the frame stays queued.
    @inline(__always)
    mutating func transmit(_ l: Int32, _ seq: UInt32, ackNow: Bool) -> Bool {
        let link = wire.links! + Int(l)
        let f = link.pointee.frames + Int(seq & UInt32(MXWire.window - 1))
        guard sendFrame(link, f.pointee.buffer!, f.pointee.length, f.pointee.external, f.pointee.externalLength,
                        droppable: true, extraFlags: ackNow ? FrameFlags.ackNow : 0) else { return false }
        count(.framesSent)
        return true
    }

    /// Lets the frame just reserved on link `l` carry `length` bytes of the sender's own memory
    /// after its record, without a copy (a piece of a pull, from the send request `owner`).
    @inline(__always)
    mutating func wireAttach(_ l: Int32, _ data: UnsafeRawPointer, _ length: Int, owner: Int32) {
        let link = wire.links! + Int(l)
        let f = link.pointee.frames + Int(link.pointee.nextSeq & UInt32(MXWire.window - 1))
        f.pointee.external = data
        f.pointee.externalLength = length
        f.pointee.owner = owner
    }

    /// An ack-only frame (no sequence number).
    mutating func sendAck(_ l: Int32) {
        let link = wire.links! + Int(l)
        var header = (UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &header) { h in
            stampHeader(h.baseAddress!, .ack, link)
            _ = sendFrame(link, h.baseAddress!, FrameLayout.headerSize, nil, 0, droppable: false)
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

    /// Frees the frames the peer acknowledged (all before `ack`).
    @inline(__always)
    mutating func applyAck(_ l: Int32, _ ack: UInt32, now: UInt64) {
        let link = wire.links! + Int(l)
        let newly = ack &- link.pointee.base
        guard newly != 0, newly <= link.pointee.nextSeq &- link.pointee.base else { return }
        var seq = link.pointee.base
        while seq != ack {
            let f = link.pointee.frames + Int(seq & UInt32(MXWire.window - 1))
            if Int32(bitPattern: seq &- link.pointee.transmitNext) < 0 {
                link.pointee.inFlightBytes -= f.pointee.length + f.pointee.externalLength
            }
            // A large buffer goes back to the pool (or away, when the pool is full).
            if f.pointee.capacity > WireState.smallFrame {
                if f.pointee.capacity == WireState.largeBlock && wire.largePool.count < WireState.poolBlocks {
                    wire.largePool.append(f.pointee.buffer!)
                } else {
                    free(f.pointee.buffer)
                }
                f.pointee.buffer = nil
                f.pointee.capacity = 0
            }
            f.pointee.external = nil
            f.pointee.externalLength = 0
            f.pointee.owner = -1
            seq &+= 1
        }
        link.pointee.base = ack
        if Int32(bitPattern: link.pointee.transmitNext &- ack) < 0 { link.pointee.transmitNext = ack }
        link.pointee.timerStart = now
        link.pointee.resendInterval = MXWire.firstResendNanoseconds
        link.pointee.fastResent = false
    }

    /// Sends what every link owes (acks), e.g. before sleeping.
    mutating func flushWireAcks() {
        for l in 0..<wire.linkCount where wire.links![Int(l)].ackOwed > 0 && peers[Int(wire.links![Int(l)].peer)].alive {
            sendAck(l)
        }
    }

    /// Whether something toward a live peer of another host is not through yet: frames not
    /// acked, pull pieces, pull requests, refusals or notifies still waiting for room. A sleeper
    /// must wake to resend; a closing endpoint lingers.
    var wireAwaitsAcks: Bool {
        mutating get {
            for l in 0..<Int(wire.linkCount) where wire.links![l].unacked && peers[Int(wire.links![l].peer)].alive { return true }
            func waits(_ p: Int32) -> Bool { peers[Int(p)].alive && peers[Int(p)].link >= 0 }
            if pulls.outgoing.contains(where: { waits($0.peer) }) { return true }
            if pulls.pending.contains(where: { waits($0.peer) }) { return true }
            if pulls.refusals.contains(where: { waits($0.peer) }) { return true }
            return pendingNotifies.contains { peers[Int($0.peer)].alive && peers[Int($0.peer)].link >= 0 }
        }
    }

    // MARK: progress

    /// Reads arrived frames, serves pulls, sends owed acks, resends what was not acked in time.
    mutating func wireProgress() -> Bool {
        // The socket costs a system call to look at (longer than many passes over the rings,
        // and a message that arrives meanwhile waits for it). After finding it empty, the next
        // passes skip it and the clock; while the wire is idle (no frame in or out for 200 µs)
        // it is looked at once every 20 µs at most; while busy, every other pass.
        if wire.quietPasses > 0 {
            wire.quietPasses -= 1
            return false
        }
        var progressed = false
        let now = monotonicNanoseconds()
        let idle = now &- wire.lastTraffic > WireState.idleAfterNanoseconds
        if idle && now &- wire.lastPoll < WireState.idlePollNanoseconds {
            wire.quietPasses = WireState.quietSkip
        } else {
            wire.lastPoll = now
            let buffer = wire.receiveBuffer!
            for _ in 0..<64 {
                var ip: UInt32 = 0
                var port: UInt16 = 0
                let n = cmx_udp_recv(wire.fd, buffer, WireState.receiveCapacity, &ip, &port)
                if n < 0 { break }
                progressed = true
                handleFrame(buffer, length: n, from: ip, port: port, now: now)
            }
            if progressed { wire.lastTraffic = now }
            wire.quietPasses = progressed ? 0 : (idle ? WireState.quietSkip : 1)
        }
        // Acks and resend timers: after frames came in, else every 100 µs.
        guard progressed || now &- wire.lastScan >= WireState.scanNanoseconds else { return progressed }
        wire.lastScan = now
        for l in 0..<wire.linkCount {
            let link = wire.links! + Int(l)
            guard peers[Int(link.pointee.peer)].alive else { continue }
            if link.pointee.broken {
                peerGone(link.pointee.peer, reason: "could not be served: out of memory keeping a frame for resending")
                progressed = true
                continue
            }
            if link.pointee.ackOwed >= MXWire.ackEvery || (link.pointee.ackOwed > 0 && now >= link.pointee.ackDue) {
                sendAck(l)
            }
            guard link.pointee.unacked else { continue }
            if now > link.pointee.timerStart && now - link.pointee.timerStart > link.pointee.resendInterval {
                goBack(link, now: now)
                link.pointee.resendInterval = min(link.pointee.resendInterval * 2, MXWire.maxResendNanoseconds)
            }
            if link.pointee.transmitNext != link.pointee.nextSeq { wirePump(l) }
        }
        return progressed
    }

    /// One datagram: checked (magic, link, sessions, sequence, record geometry), its ack
    /// applied, its record handled in order. Anything else is dropped.
    mutating func handleFrame(_ f: UnsafeMutableRawPointer, length n: Int, from ip: UInt32, port: UInt16, now: UInt64) {
        guard n >= FrameLayout.headerSize, n <= WireState.receiveCapacity,
              Shm.load(f, FrameLayout.magicOffset, as: UInt32.self) == FrameLayout.magic,
              Shm.load(f, FrameLayout.versionOffset, as: UInt8.self) == FrameLayout.version,
              let l = wire.linkByAddress[WireState.addressKey(ip, port)] else {
            // Perhaps a peer whose attach event or connect reply is still to be read: read
            // control events next (its frame comes again).
            controlPending = true
            count(.drops)
            return
        }
        let link = wire.links! + Int(l)
        let p = link.pointee.peer
        guard peers[Int(p)].alive,
              Shm.load(f, FrameLayout.sourceSessionOffset, as: UInt32.self) == link.pointee.peerSession,
              Shm.load(f, FrameLayout.targetSessionOffset, as: UInt32.self) == wire.session else { count(.drops); return }
        count(.framesReceived)
        let ack = Shm.load(f, FrameLayout.ackOffset, as: UInt32.self)
        applyAck(l, ack, now: now)
        if Shm.load(f, FrameLayout.flagsOffset, as: UInt8.self) & FrameFlags.gap != 0 && ack == link.pointee.base
            && link.pointee.transmitNext != link.pointee.base && !link.pointee.fastResent {
            // The peer lost a frame: go back to it now (once for this base; the timer covers
            // a lost resend).
            goBack(link, now: now)
            link.pointee.fastResent = true
        }
        guard Shm.load(f, FrameLayout.typeOffset, as: UInt8.self) == FrameType.data.rawValue else { return }
        guard Shm.load(f, FrameLayout.sequenceOffset, as: UInt32.self) == link.pointee.expected else {
            // A duplicate (our ack was lost) or a frame after a lost one: say where we are.
            count(.drops)
            if Int32(bitPattern: Shm.load(f, FrameLayout.sequenceOffset, as: UInt32.self) &- link.pointee.expected) > 0 {
                link.pointee.gap = true
            }
            link.pointee.ackOwed = MXWire.ackEvery
            return
        }
        let cell = f + FrameLayout.headerSize
        let body = n - FrameLayout.headerSize - RecordLayout.headerSize
        guard body >= 0 else { return peerGone(p, reason: "sent a malformed frame") }
        let kind = Record.kind(cell)
        let length = Record.length(cell)
        let wellFormed: Bool
        switch kind {
        case RecordKind.eager.rawValue, RecordKind.pullReply.rawValue: wellFormed = body == length
        case RecordKind.rendezvous.rawValue, RecordKind.pullRequest.rawValue: wellFormed = body == RecordLayout.rndvPayloadSize
        case RecordKind.notify.rawValue: wellFormed = body == 0
        default: wellFormed = false
        }
        guard wellFormed else { return peerGone(p, reason: "sent a malformed frame") }
        link.pointee.expected &+= 1
        if link.pointee.ackOwed == 0 { link.pointee.ackDue = now + MXWire.ackDelayNanoseconds }
        link.pointee.ackOwed += 1
        if Shm.load(f, FrameLayout.flagsOffset, as: UInt8.self) & FrameFlags.ackNow != 0 {
            link.pointee.ackOwed = max(link.pointee.ackOwed, MXWire.ackEvery)
        }
        handleRecord(p, cell, kind: kind, length: length)
    }

    /// A rendezvous send toward another host ended (completed or failed): no frame may point
    /// into its buffer any more. Pieces still unacked get a copy of their bytes (the buffer is
    /// still valid now; its owner may free it once the request is done).
    mutating func releaseWireReferences(_ r: Int32) {
        let s = requests[r]
        guard s.pointee.kind == MXStatus.Kind.send.rawValue, s.pointee.flags & RequestFlag.rendezvous != 0,
              s.pointee.peer >= 0, s.pointee.peer < peerCount else { return }
        let l = peers[Int(s.pointee.peer)].link
        guard l >= 0 else { return }
        // A peer that is gone sends nothing again (wireDropPeer empties its window).
        guard peers[Int(s.pointee.peer)].alive else { return }
        let link = wire.links! + Int(l)
        var seq = link.pointee.base
        while seq != link.pointee.nextSeq {
            let f = link.pointee.frames + Int(seq & UInt32(MXWire.window - 1))
            if f.pointee.owner == r, let data = f.pointee.external {
                let size = f.pointee.length + f.pointee.externalLength
                // A piece is at most a frame: a pool block holds it with its header.
                if f.pointee.capacity < size, let block = wire.largePool.popLast() ?? malloc(WireState.largeBlock) {
                    block.copyMemory(from: f.pointee.buffer!, byteCount: f.pointee.length)
                    free(f.pointee.buffer)
                    f.pointee.buffer = block
                    f.pointee.capacity = WireState.largeBlock
                }
                if f.pointee.capacity >= size {
                    (f.pointee.buffer! + f.pointee.length).copyMemory(from: data, byteCount: f.pointee.externalLength)
                    f.pointee.length = size
                    f.pointee.externalLength = 0
                } else {
                    // No memory for the copy: this frame can never go again; the pair ends.
                    link.pointee.broken = true
                }
                f.pointee.external = nil
                f.pointee.owner = -1
            }
            seq &+= 1
        }
    }

    // MARK: peers going away

    /// The peer's link is dead: nothing of it is sent again, its pulls stop.
    mutating func wireDropPeer(_ p: Int32) {
        let link = wire.links! + Int(peers[Int(p)].link)
        link.pointee.base = link.pointee.nextSeq
        link.pointee.transmitNext = link.pointee.nextSeq
        link.pointee.inFlightBytes = 0
        link.pointee.ackOwed = 0
        for f in 0..<MXWire.window {
            link.pointee.frames[f].external = nil
            link.pointee.frames[f].externalLength = 0
            link.pointee.frames[f].owner = -1
        }
    }
}
