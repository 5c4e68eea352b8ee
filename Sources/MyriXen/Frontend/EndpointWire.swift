#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// The endpoint's side of the wire transport (`Transport/WireTransport.swift`): peers of
/// other hosts attached as links, the socket read and its frames' records handled as a ring's
/// are, pull pieces kept when their send ends, links dropped with their peers.
extension EndpointCore {
    // MARK: links

    /// Adds a peer of another host: its data path is the link, its rings are placeholders.
    mutating func attachRemote(_ g: RemotePeer) -> Int32 {
        if wire.links == nil {
            wire.links = .allocate(capacity: MXLimits.maxPeers)
            wire.receiveBuffer = malloc(WireState.receiveCapacity)
            wire.iov = .allocate(capacity: 2 * MXWire.maxBatchFrames)
            wire.iovCounts = .allocate(capacity: MXWire.maxBatchFrames)
            wire.inert = calloc(1, RingLayout.headerPage + WireState.inertCells * RingLayout.cellSize)
            formatRing(wire.inert!, dataBytes: WireState.inertCells * RingLayout.cellSize)
            wire.session = Shm.load(protectedPage, ProtectedPage.sessionOffset, as: UInt32.self)
            wire.smallPool.reserveCapacity(WireState.poolBlocks)
            wire.mediumPool.reserveCapacity(WireState.poolBlocks)
            wire.largePool.reserveCapacity(WireState.largePoolBlocks)
            wire.impair = WireImpairment.fromEnvironment()
            wire.counters = unprotected
            wire.offload = getenv(MXWire.offloadEnvironment).map { String(cString: $0) != "0" } ?? true
            // Coalesced receives are the kernel's to give or not: without them frames come one by one.
            if wire.offload { _ = cmx_udp_enable_gro(wire.fd) }
        }
        let p = peerCount
        let l = wire.linkCount
        let frames = UnsafeMutablePointer<WireFrame>.allocate(capacity: MXWire.window)
        frames.initialize(repeating: WireFrame(), count: MXWire.window)
        let heads = UnsafeMutableRawPointer.allocate(byteCount: MXWire.window * WireState.headBytes, alignment: 64)
        let frameBytes = MXWire.clampFrame(min(wire.frameLimit, Int(g.frameLimit)))
        (wire.links! + Int(l)).initialize(to: WireLink(
            peer: p, ipv4: g.ipv4, port: g.port, peerSession: g.session,
            maxInFlightBytes: max(Int(g.receiveBuffer) / MXWire.inFlightShareOfReceiveBuffer, 2 * frameBytes),
            frameBytes: frameBytes, frames: frames, heads: heads))
        wire.linkCount += 1
        wire.linkByAddress[WireState.addressKey(g.ipv4, g.port)] = l
        let inert = wire.inert!
        (peers + Int(p)).initialize(to: Peer(
            nicID: g.nicID, endpointID: g.endpoint, session: g.session, pid: 0, alive: true, isSelf: false,
            out: RingProducer(base: inert, cells: WireState.inertCells),
            inbound: RingConsumer(base: inert, cells: WireState.inertCells),
            peerProtected: UnsafeRawPointer(inert), peerUnprotected: UnsafeRawPointer(inert),
            eventFD: -1, mappings: [],
            eagerMax: MXLimits.rendezvousThresholdRemote, transport: .wire(link: l)))
        peerCount += 1
        return p
    }

    // MARK: sending frames

    /// Sends what every link owes (acks), e.g. before sleeping.
    mutating func flushWireAcks() {
        for l in 0..<wire.linkCount where wire.links![Int(l)].ackOwed > 0 && peers[Int(wire.links![Int(l)].peer)].alive {
            wire.sendAck(l)
        }
    }

    /// Whether something toward a live peer of another host is not through yet: frames not
    /// acked, pull pieces, pull requests, refusals or notifies still waiting for room. A sleeper
    /// must wake to resend; a closing endpoint lingers.
    var wireAwaitsAcks: Bool {
        mutating get {
            for l in 0..<Int(wire.linkCount) where wire.links![l].unacked && peers[Int(wire.links![l].peer)].alive { return true }
            func waits(_ p: Int32) -> Bool { peers[Int(p)].alive && !peers[Int(p)].transport.isRing }
            if pulls.outgoing.contains(where: { waits($0.peer) }) { return true }
            if pulls.pending.contains(where: { waits($0.peer) }) { return true }
            if pulls.replies.contains(where: { waits($0.peer) }) { return true }
            return pendingNotifies.contains { peers[Int($0.peer)].alive && !peers[Int($0.peer)].transport.isRing }
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
                var segment: Int32 = 0
                let n = cmx_udp_recv_segments(wire.fd, buffer, WireState.receiveCapacity, &ip, &port, &segment)
                if n < 0 { break }
                progressed = true
                count(.frameReceives)
                guard n <= WireState.receiveCapacity else { count(.drops); continue }
                // A coalesced run: frames of `segment` bytes, the last perhaps shorter.
                let step = segment > 0 ? Int(segment) : n
                if step > wire.largestFrame { wire.largestFrame = step }
                var offset = 0
                while offset < n {
                    handleFrame(buffer + offset, length: min(step, n - offset), from: ip, port: port, now: now)
                    offset += step
                }
            }
            if progressed { wire.lastTraffic = now }
            wire.quietPasses = progressed ? 0 : (idle ? WireState.quietSkip : 1)
        }
        // Acks and resend timers: after frames came in, else every 100 µs.
        guard progressed || wire.scanSoon || now &- wire.lastScan >= WireState.scanNanoseconds else { return progressed }
        wire.lastScan = now
        wire.scanSoon = false
        for l in 0..<wire.linkCount {
            let link = wire.links! + Int(l)
            guard peers[Int(link.pointee.peer)].alive else { continue }
            if link.pointee.broken {
                peerGone(link.pointee.peer, reason: "could not be served: out of memory keeping a frame for resending")
                progressed = true
                continue
            }
            wire.tick(l, now: now)
        }
        return progressed
    }

    /// One frame: checked (magic, link, sessions, sequence, record geometry), its ack applied,
    /// its record handled in order (a record longer than a frame streamed into the receive it
    /// matches, or handled once its last frame is in). Anything else is dropped.
    mutating func handleFrame(_ f: UnsafeMutableRawPointer, length n: Int, from ip: UInt32, port: UInt16, now: UInt64) {
        guard Frame.isFrame(f, length: n), let l = wire.linkByAddress[WireState.addressKey(ip, port)] else {
            // Perhaps a peer whose attach event or connect reply is still to be read: read
            // control events next (its frame comes again).
            controlPending = true
            count(.drops)
            return
        }
        let p = wire.links![Int(l)].peer
        guard peers[Int(p)].alive else { count(.drops); return }
        switch wire.accept(l, f, length: n, now: now) {
        case .first(let c, let bytes):
            // An eager message of several frames for a receive posted already goes straight
            // into it, frame by frame; anything else is gathered first.
            if !streamEager(l, p, c, bytes) { finishFrame(p, wire.beginGathering(l, c, bytes)) }
        case .more(let c, let bytes, let last):
            streamMore(l, p, c, bytes, last: last)
        case let arrival:
            finishFrame(p, arrival)
        }
    }

    /// A whole record of a frame (or gathered from several): checked, then handled.
    @inline(__always)
    mutating func finishFrame(_ p: Int32, _ arrival: WireArrival) {
        let cell: UnsafeMutableRawPointer
        let recordBytes: Int
        switch arrival {
        case .nothing, .first, .more: return
        case .malformed(let reason): return peerGone(p, reason: reason)
        case .record(let c, let bytes): (cell, recordBytes) = (c, bytes)
        }
        let body = recordBytes - RecordLayout.headerSize
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
        handleRecord(p, cell, kind: kind, length: length)
    }

    /// The first frame of a record longer than a frame: an eager message that a posted receive
    /// matches is streamed into it (the receive counts as pulling from the peer meanwhile: it
    /// fails if the peer goes, and takes no pull reply). False: the record is to be gathered.
    mutating func streamEager(_ l: Int32, _ p: Int32, _ cell: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        let length = Record.length(cell)
        guard Record.kind(cell) == RecordKind.eager.rawValue, length <= MXLimits.rendezvousThresholdRemote,
              bytes > RecordLayout.headerSize, bytes - RecordLayout.headerSize < length,
              let r = engine.arrive(matchInfo: Record.matchInfo(cell)) else { return false }
        matched(r, from: p, matchInfo: Record.matchInfo(cell), length: length)
        let s = requests[r]
        markPulling(s)
        s.pointee.pullWant = 0
        s.pointee.pullToken = Record.aux(cell)
        s.pointee.transferred = 0
        s.pointee.streamSync = Record.flags(cell) & RecordFlags.sync != 0
        wire.stream(l, owner: r)
        streamMore(l, p, Record.payload(cell), bytes - RecordLayout.headerSize, last: false)
        return true
    }

    /// The next bytes of a streamed eager message: copied into its receive where they fit
    /// (`transferred` counts the bytes come so far); with the last, the receive completes.
    mutating func streamMore(_ l: Int32, _ p: Int32, _ data: UnsafeMutableRawPointer, _ bytes: Int, last: Bool) {
        let r = wire.links![Int(l)].streamOwner
        let s = requests[r]
        let offset = s.pointee.transferred
        guard s.pointee.state == RequestState.pending, s.pointee.flags & RequestFlag.pulling != 0,
              s.pointee.peer == p, bytes > 0, offset + bytes <= s.pointee.messageLength,
              !last || offset + bytes == s.pointee.messageLength else {
            return peerGone(p, reason: "sent a malformed frame")
        }
        let fits = min(bytes, max(0, s.pointee.length - offset))
        if fits > 0 { scatter(s, from: data, count: fits, at: offset) }
        s.pointee.transferred = offset + bytes
        guard last else { return }
        clearPulling(s)
        s.pointee.transferred = min(s.pointee.messageLength, s.pointee.length)
        if s.pointee.streamSync { notify(p, token: s.pointee.pullToken, flags: 0, transferred: s.pointee.transferred) }
        count(.messagesReceived)
        count(.bytesReceived, s.pointee.transferred)
        complete(r)
    }

    /// A rendezvous send toward another host ended (completed or failed): no frame may point
    /// into its buffer any more. Pieces still unacked get a copy of their bytes in a block (the
    /// buffer is still valid now; its owner may free it once the request is done).
    mutating func releaseWireReferences(_ r: Int32) {
        let s = requests[r]
        guard s.pointee.kind == MXStatus.Kind.send.rawValue, s.pointee.flags & RequestFlag.rendezvous != 0,
              s.pointee.peer >= 0, s.pointee.peer < peerCount else { return }
        guard let l = peers[Int(s.pointee.peer)].transport.link else { return }
        // A peer that is gone sends nothing again (`WireState.drop` emptied its window).
        guard peers[Int(s.pointee.peer)].alive else { return }
        wire.keepCopies(l, owner: r)
    }
}
