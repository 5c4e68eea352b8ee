#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// A peer endpoint as the data path sees it: the pair's rings and the peer's pages, mapped
/// from the grants the backend gave, and the peer's event channel.
struct Peer {
    var nicID: UInt64
    var endpointID: UInt16
    var session: UInt32
    var pid: Int32
    var alive: Bool
    var isSelf: Bool
    var out: RingProducer
    var inbound: RingConsumer
    var peerProtected: UnsafeRawPointer
    var peerUnprotected: UnsafeRawPointer
    var eventFD: Int32
    /// Sends waiting for ring space, oldest first (they keep per-pair order).
    var backlogHead: Int32 = -1
    var backlogTail: Int32 = -1
    var mappings: [(UnsafeMutableRawPointer, Int)]
    /// Largest message sent eager to this peer (the rest goes by rendezvous).
    var eagerMax: Int
    /// The pair's rings (a peer of this host), or a wire link (another host). A peer of
    /// another host has no rings: `out` and `inbound` are placeholders never written.
    var transport: PeerTransport = .ring
    /// Which way rendezvous messages from this peer of our host come fastest, as measured.
    var paths = LocalPathChooser()
}

extension MXCounter {
    /// Adds `n` to this counter in an endpoint's unprotected page (only its owner writes it).
    @inline(__always) func add(_ n: Int, in page: UnsafeMutableRawPointer) {
        let p = page + offset
        cmx_store_relaxed_u64(p, cmx_load_relaxed_u64(p) &+ UInt64(n))
    }
}

/// Request flags.
enum RequestFlag {
    static let cancelled: UInt8 = 1
    static let sync: UInt8 = 2
    static let backlogged: UInt8 = 4
    static let posted: UInt8 = 8
    static let rendezvous: UInt8 = 16
    static let awaitingNotify: UInt8 = 32
    /// A receive whose transfer needs its sender: pieces (ring or wire), a split, a stream.
    static let pulling: UInt8 = 64
    /// A posted receive from any sender that fails if a peer's host is declared lost while it
    /// waits (`MXSender.anyPeer`); a receive bound to one peer (`MXSender.peer`) has its `peer`
    /// set while still posted instead.
    static let failsOnHostLoss: UInt8 = 128
}

enum RequestState {
    static let free: UInt8 = 0
    static let pending: UInt8 = 1
    static let done: UInt8 = 2
}

struct RequestSlot {
    var generation: UInt32 = 0
    var state: UInt8 = RequestState.free
    var kind: UInt8 = 0
    var flags: UInt8 = 0
    var failed = false
    var peer: Int32 = -1
    var matchInfo: UInt64 = 0
    var mask: UInt64 = 0
    var buffer: UnsafeMutableRawPointer?
    var length: Int = 0
    /// Owned copy of the segment list when there is more than one.
    var segments: UnsafeMutablePointer<iovec>?
    var segmentCount: Int32 = 0
    var messageLength: Int = 0
    var transferred: Int = 0
    var ticket: Int32 = -1
    var regionID: Int32 = -1
    var regionGeneration: UInt32 = 0
    var regionOffset: UInt64 = 0
    /// Owned contiguous copy of a multi-segment rendezvous send.
    var packed: UnsafeMutableRawPointer?
    var next: Int32 = -1
    var prev: Int32 = -1
    var context: UInt64 = 0
    /// A receive pulling over the wire: the sender's token and the bytes it asked for.
    var pullToken: UInt64 = 0
    var pullWant: Int = 0
    /// A receive an eager message streams into (`EndpointCore.streamEager`) from a
    /// synchronous send: the sender waits for a notify.
    var streamSync = false
    /// A receive timed for the choice of its local way (`LocalPathChooser`): when it began
    /// (0: not timed), on which way, and the endpoint's transfer starts and pull time then.
    var pullStart: UInt64 = 0
    var pullCMA: UInt64 = 0
    var pullStarts: UInt32 = 0
    var pullPath: UInt8 = 0
    /// A split receive whose own half failed (errno): it fails once the sender's half is in.
    var splitError: Int32 = 0
}

struct UnexpectedSlot {
    var peer: Int32 = -1
    var matchInfo: UInt64 = 0
    var length: Int = 0
    var kind: UInt8 = 0
    var flags: UInt8 = 0
    var token: UInt64 = 0
    var data: UnsafeMutableRawPointer?
    var region: UInt32 = 0
    var regionGeneration: UInt32 = 0
    var regionOffset: UInt64 = 0
}

struct PendingNotify {
    var peer: Int32
    var token: UInt64
    var flags: UInt8
    var transferred: Int
}

/// The data path of one endpoint: requests, matching, the rings and the pull engine. Every
/// hot operation is a mutating method on this struct, reached through a stable pointer, so
/// it runs without locks, allocation, reference counting or exclusivity checks. (Even the
/// read-only ones are `mutating`: called through the pointer, a non-mutating method gets a
/// copy of the whole struct.)
struct EndpointCore {
    let protectedPage: UnsafeRawPointer
    let unprotected: UnsafeMutableRawPointer
    let threshold: Int
    let myPID: Int32
    var requests = SlotPool(capacity: 1024, blank: RequestSlot())
    var unexpected = SlotPool(capacity: 256, blank: UnexpectedSlot())
    /// The unexpected eager payloads' memory, reused by size.
    var unexpectedData = BufferPool()
    var engine = MatchEngine(capacity: 1024)
    var cache = RegistrationCache()
    var peers: UnsafeMutablePointer<Peer>
    /// Why each peer that went away did (for receives posted for it afterwards).
    var departures: [Int32: String] = [:]
    /// How many peers were lost with their host, and the last such loss: a receive or probe
    /// from any peer that waits across one fails (the message might have come from there).
    var hostLosses: UInt32 = 0
    var lastHostLoss: MXError?
    let peerCapacity: Int32
    var peerCount: Int32 = 0
    var completedHead: Int32 = -1
    var completedTail: Int32 = -1
    var pendingNotifies: [PendingNotify] = []
    var backlogged = 0
    var seenAttach: UInt64 = 0
    var controlPending = false
    var errors: [Int32: MXError] = [:]
    /// The wire to other hosts (EndpointWire.swift).
    var wire = WireState()
    /// Rendezvous messages moved by copy, in pieces (EndpointPull.swift).
    var pulls = PullState()
    /// How rendezvous messages between endpoints of this host move (`MXEndpointOptions.localPath`).
    let localPath: MXLocalPath

    static let recordsPerPeerPerRound = 32

    init(protectedPage: UnsafeRawPointer, unprotected: UnsafeMutableRawPointer, threshold: Int, localPath: MXLocalPath) {
        self.protectedPage = protectedPage
        self.unprotected = unprotected
        self.threshold = threshold
        self.localPath = localPath
        myPID = getpid()
        peerCapacity = Int32(MXLimits.maxPeers)
        peers = .allocate(capacity: MXLimits.maxPeers)
        seenAttach = cmx_load_acquire_u64(protectedPage + ProtectedPage.attachGenerationOffset)
    }

    mutating func destroy() {
        for i in 0..<Int(requests.count) where requests.isAllocated(Int32(i)) {
            releaseResources(Int32(i))
        }
        for i in 0..<Int(unexpected.count) where unexpected.isAllocated(Int32(i)) {
            if let d = unexpected[Int32(i)].pointee.data { free(d) }
        }
        unexpectedData.destroy()
        for i in 0..<Int(peerCount) {
            for (p, s) in peers[i].mappings { SharedMemory.unmap(p, size: s) }
            closeDescriptor(peers[i].eventFD)
        }
        peers.deinitialize(count: Int(peerCount))
        peers.deallocate()
        wire.destroy()
        requests.destroy()
        unexpected.destroy()
        engine.destroy()
    }

    // MARK: counters

    @inline(__always)
    mutating func count(_ c: MXCounter, _ n: Int = 1) {
        c.add(n, in: unprotected)
    }

    // MARK: requests

    @inline(__always)
    mutating func allocateRequest(kind: MXStatus.Kind) -> Int32 {
        let r = requests.allocate()
        let slot = requests[r]
        slot.pointee = RequestSlot(generation: slot.pointee.generation, state: RequestState.pending, kind: kind.rawValue)
        return r
    }

    @inline(__always)
    mutating func handle(_ r: Int32) -> MXRequest { MXRequest(index: r, generation: requests[r].pointee.generation) }

    /// Resolves a handle to its slot index, or throws why it cannot.
    @inline(__always)
    mutating func validate(_ req: MXRequest) throws(MXError) -> Int32 {
        guard req.index >= 0 && Int(req.index) < requests.count else {
            throw MXError(.invalidRequest, "request \(req.index) does not belong to this endpoint")
        }
        let s = requests[req.index]
        guard s.pointee.generation == req.generation && s.pointee.state != RequestState.free else {
            throw MXError(.requestCompleted, "the request was already completed and freed by an earlier test or wait")
        }
        return req.index
    }

    @inline(__always)
    mutating func complete(_ r: Int32) {
        let s = requests[r]
        s.pointee.state = RequestState.done
        s.pointee.next = -1
        s.pointee.prev = completedTail
        if completedTail >= 0 { requests[completedTail].pointee.next = r } else { completedHead = r }
        completedTail = r
    }

    mutating func fail(_ r: Int32, _ error: MXError) {
        let s = requests[r]
        guard s.pointee.state == RequestState.pending else { return }
        if s.pointee.flags & RequestFlag.posted != 0 {
            _ = engine.cancel(receive: r, ticket: s.pointee.ticket)
            s.pointee.flags &= ~RequestFlag.posted
        }
        if s.pointee.flags & RequestFlag.backlogged != 0 { unlinkBacklog(r) }
        clearPulling(s)
        stopServing(r)
        unpinRegion(r)
        s.pointee.failed = true
        errors[r] = error
        complete(r)
    }

    /// The status of a completed request; frees it. Throws the request's error if it failed.
    @inline(__always)
    mutating func finish(_ r: Int32) throws(MXError) -> MXStatus {
        let s = requests[r]
        let status = MXStatus(kind: MXStatus.Kind(rawValue: s.pointee.kind) ?? .send,
                              source: address(ofPeer: s.pointee.peer), matchInfo: s.pointee.matchInfo,
                              messageLength: s.pointee.messageLength, transferredLength: s.pointee.transferred,
                              context: s.pointee.context, isCancelled: s.pointee.flags & RequestFlag.cancelled != 0)
        let failed = s.pointee.failed
        // Unlink from the completed list.
        if s.pointee.prev >= 0 { requests[s.pointee.prev].pointee.next = s.pointee.next } else { completedHead = s.pointee.next }
        if s.pointee.next >= 0 { requests[s.pointee.next].pointee.prev = s.pointee.prev } else { completedTail = s.pointee.prev }
        freeRequest(r)
        if failed, let e = errors.removeValue(forKey: r) { throw e }
        return status
    }

    /// Returns a request's slot; its handle is stale from now on (the generation moves on).
    @inline(__always)
    mutating func freeRequest(_ r: Int32) {
        releaseResources(r)
        let s = requests[r]
        s.pointee.generation &+= 1
        s.pointee.state = RequestState.free
        requests.free(r)
    }

    mutating func releaseResources(_ r: Int32) {
        let s = requests[r]
        if let seg = s.pointee.segments { seg.deallocate(); s.pointee.segments = nil }
        if let p = s.pointee.packed { free(p); s.pointee.packed = nil }
    }

    @inline(__always)
    mutating func address(ofPeer p: Int32) -> MXEndpointAddress? {
        guard p >= 0 && p < peerCount else { return nil }
        let peer = peers + Int(p)
        return MXEndpointAddress(nicID: peer.pointee.nicID, endpointID: Int(peer.pointee.endpointID),
                                 session: peer.pointee.session, peerIndex: p)
    }

    /// Copies a caller's segment list into the request (more than one segment).
    mutating func attachSegments(_ r: Int32, _ segments: UnsafeBufferPointer<MXSegment>) -> Int {
        let s = requests[r]
        if segments.count == 1 {
            s.pointee.buffer = segments[0].base
            s.pointee.length = segments[0].length
            return segments[0].length
        }
        let v = UnsafeMutablePointer<iovec>.allocate(capacity: max(segments.count, 1))
        var total = 0
        for (i, seg) in segments.enumerated() {
            v[i] = iovec(iov_base: seg.base, iov_len: seg.length)
            total += seg.length
        }
        s.pointee.segments = v
        s.pointee.segmentCount = Int32(segments.count)
        s.pointee.length = total
        return total
    }

    /// Copies `n` bytes; small copies (the tiny and small classes) inline, without a call.
    @inline(__always)
    static func copy(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ n: Int) {
        if n <= 64 {
            var i = 0
            while i + 8 <= n {
                dst.storeBytes(of: src.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < n {
                dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
                i += 1
            }
        } else {
            dst.copyMemory(from: src, byteCount: n)
        }
    }

    /// Gathers a send request's data into `dst`.
    @inline(__always)
    mutating func gather(_ s: UnsafeMutablePointer<RequestSlot>, into dst: UnsafeMutableRawPointer) {
        if let v = s.pointee.segments {
            var off = 0
            for i in 0..<Int(s.pointee.segmentCount) where v[i].iov_len > 0 {
                (dst + off).copyMemory(from: v[i].iov_base!, byteCount: v[i].iov_len)
                off += v[i].iov_len
            }
        } else if s.pointee.length > 0 {
            EndpointCore.copy(dst, s.pointee.buffer!, s.pointee.length)
        }
    }

    /// Scatters `n` bytes into a receive request's buffer(s); returns what fitted.
    @inline(__always)
    mutating func scatter(_ s: UnsafeMutablePointer<RequestSlot>, from src: UnsafeRawPointer, count n: Int) -> Int {
        if let v = s.pointee.segments {
            var off = 0
            for i in 0..<Int(s.pointee.segmentCount) where off < n {
                let k = min(v[i].iov_len, n - off)
                if k > 0 { v[i].iov_base!.copyMemory(from: src + off, byteCount: k) }
                off += k
            }
            return off
        }
        let k = min(n, s.pointee.length)
        if k > 0 { EndpointCore.copy(s.pointee.buffer!, src, k) }
        return k
    }

    // MARK: sending

    /// Wakes the peer if it sleeps on its event channel. The fence orders our record's stamp
    /// before reading its flag, matching the fence the sleeper puts between its flag and its
    /// last look at the rings.
    @inline(__always)
    mutating func kick(_ p: Int32) {
        let peer = peers + Int(p)
        cmx_fence_seq_cst()
        if cmx_load_relaxed_u64(peer.pointee.peerUnprotected + UnprotectedPage.sleepingOffset) != 0 {
            var one: UInt64 = 1
            _ = write(peer.pointee.eventFD, &one, 8)
        }
    }

    /// Queues a send request whose record has been prepared in its slot; writes it now if the
    /// ring has room and nothing is queued before it.
    @inline(__always)
    mutating func submit(_ r: Int32) {
        let p = requests[r].pointee.peer
        if peers[Int(p)].backlogHead < 0 && tryWrite(r) { return }
        let s = requests[r]
        s.pointee.flags |= RequestFlag.backlogged
        s.pointee.next = -1
        s.pointee.prev = peers[Int(p)].backlogTail
        if peers[Int(p)].backlogTail >= 0 { requests[peers[Int(p)].backlogTail].pointee.next = r } else { peers[Int(p)].backlogHead = r }
        peers[Int(p)].backlogTail = r
        backlogged += 1
    }

    mutating func unlinkBacklog(_ r: Int32) {
        let s = requests[r]
        let p = Int(s.pointee.peer)
        if s.pointee.prev >= 0 { requests[s.pointee.prev].pointee.next = s.pointee.next } else { peers[p].backlogHead = s.pointee.next }
        if s.pointee.next >= 0 { requests[s.pointee.next].pointee.prev = s.pointee.prev } else { peers[p].backlogTail = s.pointee.prev }
        s.pointee.flags &= ~RequestFlag.backlogged
        s.pointee.next = -1
        s.pointee.prev = -1
        backlogged -= 1
    }

    /// Writes the record of send request `r` into its peer's ring. False when the ring is full.
    @inline(__always)
    mutating func tryWrite(_ r: Int32) -> Bool {
        let s = requests[r]
        let p = Int(s.pointee.peer)
        let rendezvous = s.pointee.flags & RequestFlag.rendezvous != 0
        let payload = rendezvous ? RecordLayout.rndvPayloadSize : s.pointee.length
        // Eager data of one buffer toward another host goes from that buffer to the kernel,
        // and is copied for resends only once sent (`WireState.commitDirect`).
        let direct = !rendezvous && payload > WireState.inlineData && s.pointee.segments == nil
            ? peers[p].transport.link : nil
        let reserved: UnsafeMutableRawPointer?
        if let l = direct { reserved = wire.reserveDirect(l, payload: payload) } else { reserved = reserveRecord(p, payload: payload) }
        guard let cell = reserved else { return false }
        let token = Record.token(r, s.pointee.generation)
        if rendezvous {
            Record.write(cell, kind: .rendezvous, length: s.pointee.length, matchInfo: s.pointee.matchInfo, aux: token)
            Record.writeRegion(cell, region: UInt32(s.pointee.regionID), generation: s.pointee.regionGeneration,
                               offset: s.pointee.regionOffset)
        } else {
            Record.write(cell, kind: .eager, flags: s.pointee.flags & RequestFlag.sync != 0 ? RecordFlags.sync : 0,
                         length: s.pointee.length, matchInfo: s.pointee.matchInfo, aux: token)
            if direct == nil { gather(s, into: Record.payload(cell)) }
        }
        if let l = direct {
            wire.commitDirect(l, data: UnsafeRawPointer(s.pointee.buffer!), length: payload)
        } else {
            publishRecord(p, cell)
        }
        count(.messagesSent)
        count(.bytesSent, s.pointee.length)
        if rendezvous || s.pointee.flags & RequestFlag.sync != 0 {
            s.pointee.flags |= RequestFlag.awaitingNotify
        } else {
            s.pointee.transferred = s.pointee.length
            complete(r)
        }
        return true
    }

    /// Room for a record toward peer `p`: in the pair's ring, or in a frame of its wire link.
    @inline(__always)
    mutating func reserveRecord(_ p: Int, payload: Int) -> UnsafeMutableRawPointer? {
        switch peers[p].transport {
        case .ring: return peers[p].out.reserve(payload: payload)
        case .wire(let l): return wire.reserve(l, payload: payload)
        }
    }

    /// Hands a filled record to the peer: publishes it in the ring (waking the peer if it
    /// sleeps), or sends its frame.
    @inline(__always)
    mutating func publishRecord(_ p: Int, _ cell: UnsafeMutableRawPointer) {
        switch peers[p].transport {
        case .ring:
            peers[p].out.publish(cell)
            kick(Int32(p))
        case .wire(let l):
            wire.commit(l)
        }
    }

    /// Retries queued sends and notifies. Returns whether anything went out.
    mutating func flushBacklog() -> Bool {
        var progressed = false
        if !pendingNotifies.isEmpty {
            var remaining: [PendingNotify] = []
            for n in pendingNotifies {
                if !peers[Int(n.peer)].alive { continue }
                if !writeNotify(n.peer, token: n.token, flags: n.flags, transferred: n.transferred) { remaining.append(n) } else { progressed = true }
            }
            pendingNotifies = remaining
        }
        if pulls.hasPending && flushPendingPulls() { progressed = true }
        if backlogged > 0 {
            for p in 0..<Int(peerCount) where peers[p].backlogHead >= 0 {
                while peers[p].backlogHead >= 0 {
                    let r = peers[p].backlogHead
                    // Take it off the backlog first: tryWrite may complete it.
                    unlinkBacklog(r)
                    if !tryWrite(r) {
                        // Put it back at the head.
                        let s = requests[r]
                        s.pointee.flags |= RequestFlag.backlogged
                        s.pointee.prev = -1
                        s.pointee.next = peers[p].backlogHead
                        if peers[p].backlogHead >= 0 { requests[peers[p].backlogHead].pointee.prev = r } else { peers[p].backlogTail = r }
                        peers[p].backlogHead = r
                        backlogged += 1
                        break
                    }
                    progressed = true
                }
            }
        }
        return progressed
    }

    /// Receiver to sender: "matched" (sync) or "pulled" (rendezvous), or refused.
    /// `transferred` is what the receiver took (less than sent when it truncated).
    mutating func notify(_ p: Int32, token: UInt64, flags: UInt8, transferred: Int = 0) {
        if pendingNotifies.isEmpty && writeNotify(p, token: token, flags: flags, transferred: transferred) { return }
        pendingNotifies.append(PendingNotify(peer: p, token: token, flags: flags, transferred: transferred))
    }

    @inline(__always)
    mutating func writeNotify(_ p: Int32, token: UInt64, flags: UInt8, transferred: Int) -> Bool {
        guard let cell = reserveRecord(Int(p), payload: 0) else { return false }
        Record.write(cell, kind: .notify, flags: flags, length: transferred, aux: token)
        publishRecord(Int(p), cell)
        return true
    }

    // MARK: receiving

    /// A receive into one buffer, posted (the caller checked the mask): its request.
    @inline(__always)
    mutating func postReceive(_ buffer: UnsafeMutableRawPointer?, length: Int, matchInfo: UInt64, mask: UInt64,
                              context: UInt64, sender: MXSender = .unknown) -> Int32 {
        let r = allocateRequest(kind: .receive)
        let s = requests[r]
        s.pointee.buffer = buffer
        s.pointee.length = length
        s.pointee.matchInfo = matchInfo
        s.pointee.mask = mask
        s.pointee.context = context
        post(r, sender: sender)
        return r
    }

    /// Posts receive `r` (fields set); delivers a matching unexpected message at once. A
    /// receive whose only possible sender is already gone fails at once.
    @inline(__always)
    mutating func post(_ r: Int32, sender: MXSender = .unknown) {
        let s = requests[r]
        switch sender {
        case .unknown: break
        case let .peer(a): s.pointee.peer = a.peerIndex
        case .anyPeer: s.pointee.flags |= RequestFlag.failsOnHostLoss
        }
        switch engine.post(receive: r, matchInfo: s.pointee.matchInfo, mask: s.pointee.mask) {
        case let .posted(ticket):
            s.pointee.ticket = ticket
            s.pointee.flags |= RequestFlag.posted
            if case .peer = sender, let e = senderGone(sender, since: hostLosses) { fail(r, e) }
        case let .matchedUnexpected(u):
            deliverUnexpected(u, to: r)
        }
    }

    /// Why a receive or probe from `sender`, waiting since `hostLosses` was `epoch`, can never
    /// be satisfied any more, if it cannot: its one peer went away, or (any peer) some peer's
    /// host was declared lost meanwhile.
    @inline(__always)
    func senderGone(_ sender: MXSender, since epoch: UInt32) -> MXError? {
        switch sender {
        case .unknown: return nil
        case let .peer(a):
            let p = a.peerIndex
            guard p >= 0 && p < peerCount && !peers[Int(p)].alive else { return nil }
            return departure(p, a)
        case .anyPeer:
            guard hostLosses != epoch, let lost = lastHostLoss else { return nil }
            return lost
        }
    }

    mutating func deliverUnexpected(_ u: Int32, to r: Int32) {
        let m = unexpected[u].pointee
        matched(r, from: m.peer, matchInfo: m.matchInfo, length: m.length)
        if m.kind == RecordKind.rendezvous.rawValue {
            pull(r, from: m.peer, region: m.region, generation: m.regionGeneration, offset: m.regionOffset,
                 length: m.length, token: m.token)
        } else {
            deliverEager(r, from: m.peer, data: m.data, length: m.length, flags: m.flags, token: m.token)
            if let d = m.data { unexpectedData.give(d, bytes: m.length) }
        }
        unexpected.free(u)
    }

    /// A receive has met its message: it records who sent what.
    @inline(__always)
    mutating func matched(_ r: Int32, from p: Int32, matchInfo: UInt64, length: Int) {
        let s = requests[r]
        s.pointee.flags &= ~RequestFlag.posted
        s.pointee.peer = p
        s.pointee.matchInfo = matchInfo
        s.pointee.messageLength = length
    }

    /// Copies eager data into a matched receive, acknowledges a synchronous send, completes.
    @inline(__always)
    mutating func deliverEager(_ r: Int32, from p: Int32, data: UnsafeRawPointer?, length: Int, flags: UInt8, token: UInt64) {
        let s = requests[r]
        s.pointee.transferred = data.map { scatter(s, from: $0, count: length) } ?? 0
        if flags & RecordFlags.sync != 0 { notify(p, token: token, flags: 0, transferred: s.pointee.transferred) }
        count(.messagesReceived)
        count(.bytesReceived, s.pointee.transferred)
        complete(r)
    }

    /// Polls every inbound ring once (and notes control events). Returns whether anything arrived.
    @inline(__always)
    mutating func progress() -> Bool {
        // Attach events first: a peer of another host may send as soon as the backend told us
        // of it, and its frames must find its link.
        if cmx_load_relaxed_u64(protectedPage + ProtectedPage.attachGenerationOffset) != seenAttach {
            seenAttach = cmx_load_acquire_u64(protectedPage + ProtectedPage.attachGenerationOffset)
            controlPending = true
            return true
        }
        var progressed = false
        for p in 0..<Int(peerCount) where peers[p].alive && peers[p].transport.isRing {
            // At most a batch per peer per round: with several busy senders, messages from all of
            // them reach the matching in turn (any-source receives are served fairly).
            var batch = 0
            while batch < EndpointCore.recordsPerPeerPerRound, let cell = peers[p].inbound.peek() {
                handleRecord(Int32(p), cell, kind: peers[p].inbound.recordKind, length: peers[p].inbound.recordLength)
                peers[p].inbound.release(cell)
                progressed = true
                batch += 1
            }
            // A sender waiting for room in this ring hears of the cells just freed.
            if batch > 0 && peers[p].inbound.producerWaited() { kick(Int32(p)) }
            if peers[p].inbound.isCorrupt {
                count(.drops)
                peerGone(Int32(p), reason: "wrote a malformed record into its ring")
                progressed = true
            }
        }
        if wire.linkCount > 0 && wireProgress() { progressed = true }
        if !pulls.outgoing.isEmpty && pumpPulls() { progressed = true }
        if backlogged > 0 || !pendingNotifies.isEmpty || pulls.hasPending {
            if flushBacklog() { progressed = true }
        }
        return progressed
    }

    @inline(__always)
    /// Handles one record; `kind` and `length` are what the ring checked (never re-read from
    /// shared memory, which the peer could rewrite meanwhile).
    mutating func handleRecord(_ p: Int32, _ cell: UnsafeMutableRawPointer, kind: UInt8, length: Int) {
        let matchInfo = Record.matchInfo(cell)
        let flags = Record.flags(cell)
        let token = Record.aux(cell)
        switch kind {
        case RecordKind.eager.rawValue:
            if let r = engine.arrive(matchInfo: matchInfo) {
                matched(r, from: p, matchInfo: matchInfo, length: length)
                deliverEager(r, from: p, data: Record.payload(cell), length: length, flags: flags, token: token)
            } else {
                let u = unexpected.allocate()
                let data: UnsafeMutableRawPointer? = length > 0 ? unexpectedData.take(length) : nil
                if let d = data { d.copyMemory(from: Record.payload(cell), byteCount: length) }
                unexpected[u].pointee = UnexpectedSlot(peer: p, matchInfo: matchInfo, length: length,
                                                       kind: kind, flags: flags, token: token, data: data)
                engine.enqueueUnexpected(u, matchInfo: matchInfo)
                count(.unexpectedMessages)
            }
        case RecordKind.rendezvous.rawValue:
            let (region, generation, offset) = Record.region(cell)
            if let r = engine.arrive(matchInfo: matchInfo) {
                matched(r, from: p, matchInfo: matchInfo, length: length)
                pull(r, from: p, region: region, generation: generation, offset: offset, length: length, token: token)
            } else {
                // Rendezvous data is not buffered: only the descriptor waits here.
                let u = unexpected.allocate()
                unexpected[u].pointee = UnexpectedSlot(peer: p, matchInfo: matchInfo, length: length, kind: kind,
                                                       flags: flags, token: token, data: nil, region: region,
                                                       regionGeneration: generation, regionOffset: offset)
                engine.enqueueUnexpected(u, matchInfo: matchInfo)
                count(.unexpectedMessages)
            }
        case RecordKind.notify.rawValue:
            completeSend(token: token, flags: flags, transferred: length)
        case RecordKind.pullRequest.rawValue:
            servePull(p, cell, length: length)
        case RecordKind.pushRequest.rawValue:
            servePush(p, cell, length: length)
        case RecordKind.pullReply.rawValue:
            receivePiece(p, cell, length: length)
        default:
            count(.drops)
        }
    }

    /// Lets the registration cache evict the region a send used, once the send is over.
    @inline(__always)
    mutating func unpinRegion(_ r: Int32) {
        let s = requests[r]
        if s.pointee.regionID >= 0 {
            cache.unpin(regionID: UInt32(s.pointee.regionID))
            s.pointee.regionID = -1
        }
    }

    /// A notify arrived for one of our sends.
    mutating func completeSend(token: UInt64, flags: UInt8, transferred: Int) {
        let r = Int32(bitPattern: UInt32(truncatingIfNeeded: token))
        let generation = UInt32(truncatingIfNeeded: token >> 32)
        guard r >= 0 && Int(r) < requests.count else { count(.drops); return }
        let s = requests[r]
        guard s.pointee.generation == generation, s.pointee.state == RequestState.pending,
              s.pointee.flags & RequestFlag.awaitingNotify != 0 else { count(.drops); return }
        s.pointee.flags &= ~RequestFlag.awaitingNotify
        stopServing(r)
        unpinRegion(r)
        if flags & RecordFlags.refused != 0 {
            fail(r, MXError(.pullRefused, "the receiver could not pull the message (region gone or access out of bounds)"))
            return
        }
        s.pointee.transferred = min(transferred, s.pointee.length)
        complete(r)
    }

    /// A rendezvous message matched receive `r`. From a peer of another host it comes by copy
    /// in pieces (EndpointPull.swift); from one in this very process it is copied directly;
    /// from another process of this host it takes the way `localPathChoice` says
    /// (LocalPaths.swift): pieces through the ring, a pull of it all by cross-memory attach,
    /// or a split of the copy with the sender. Then the sender is notified.
    mutating func pull(_ r: Int32, from p: Int32, region: UInt32, generation: UInt32, offset: UInt64,
                       length: Int, token: UInt64) {
        let s = requests[r]
        let peer = peers + Int(p)
        let want = min(length, s.pointee.length)
        let local = peer.pointee.isSelf || peer.pointee.pid == myPID
        var way = (path: LocalPathChoice.pull, timed: false)
        if !peer.pointee.transport.isRing {
            return requestPull(r, from: p, region: region, generation: generation, offset: offset, length: length, token: token)
        }
        if !local && want > 0 {
            way = localPathChoice(p, length: length, want: want, contiguous: s.pointee.segments == nil)
            if way.path == .pieces {
                let alone = pulls.active == 0
                requestPull(r, from: p, region: region, generation: generation, offset: offset, length: length, token: token)
                if way.timed && s.pointee.flags & RequestFlag.pulling != 0 { startTiming(s, .pieces, alone: alone) }
                return
            }
        }
        guard let remote = RegionTable.resolve(page: peer.pointee.peerProtected, id: region, generation: generation,
                                               offset: offset, length: UInt64(length)) else {
            count(.refusedPulls)
            notify(p, token: token, flags: RecordFlags.refused)
            fail(r, MXError(.pullRefused, "the sender's message of \(length) bytes is not inside its region \(region); pull refused"))
            return
        }
        if way.path == .split && requestSplit(r, from: p, region: region, generation: generation, offset: offset,
                                              remote: remote, want: want, token: token, timed: way.timed) {
            return
        }
        var done = 0
        if want > 0 {
            if local {
                let src = UnsafeRawPointer(bitPattern: UInt(remote))!
                done = scatter(s, from: src, count: want)
            } else {
                // Timed when the chooser asks, and whenever a timed transfer that needs its
                // sender is under way (the time this pull takes is not that one's).
                let clock = way.timed || pulls.active > 0
                let start = clock ? monotonicNanoseconds() : 0
                done = pullRemote(s, pid: peer.pointee.pid, remote: remote, count: want)
                if clock {
                    let took = monotonicNanoseconds() &- start
                    pulls.cmaNanos &+= took
                    if way.timed && done == want { peer.pointee.paths.record(length: want, path: .pull, nanoseconds: took) }
                }
            }
        }
        guard done == want else {
            count(.refusedPulls)
            notify(p, token: token, flags: RecordFlags.refused)
            // The sender gone (ESRCH) is a peer gone; anything else (its memory unmapped, no
            // permission) is a refused pull: the sender still runs.
            let e = errno
            fail(r, MXError(e == ESRCH ? .peerClosed : .pullRefused,
                            "pulling \(want) bytes from pid \(peer.pointee.pid) failed after \(done): \(String(cString: strerror(e)))",
                            peer: e == ESRCH ? address(ofPeer: p) : nil))
            return
        }
        s.pointee.transferred = done
        pulled(r, from: p, token: token)
    }

    /// A pull is over (`transferred` bytes are in): tells the sender, completes the receive.
    mutating func pulled(_ r: Int32, from p: Int32, token: UInt64) {
        let done = requests[r].pointee.transferred
        notify(p, token: token, flags: 0, transferred: done)
        count(.rendezvousPulls)
        count(.pulledBytes, done)
        count(.messagesReceived)
        count(.bytesReceived, done)
        complete(r)
    }

    mutating func pullRemote(_ s: UnsafeMutablePointer<RequestSlot>, pid: Int32, remote: UInt64, count want: Int) -> Int {
        var done = 0
        var local = iovec()
        // Walk the receive segments (or the single buffer) and pull into each.
        let nseg = s.pointee.segments == nil ? 1 : Int(s.pointee.segmentCount)
        for i in 0..<nseg where done < want {
            let base: UnsafeMutableRawPointer?
            let len: Int
            if let v = s.pointee.segments { base = v[i].iov_base; len = v[i].iov_len } else { base = s.pointee.buffer; len = s.pointee.length }
            var segDone = 0
            let segWant = min(len, want - done)
            while segDone < segWant {
                local.iov_base = base! + segDone
                local.iov_len = segWant - segDone
                var rem = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(remote) + UInt(done + segDone)), iov_len: segWant - segDone)
                let n = cmx_pull(pid, &local, 1, &rem, 1)
                if n <= 0 { return done + segDone }
                segDone += n
            }
            done += segDone
        }
        return done
    }

    // MARK: peers going away

    /// The peer closed or died: what it still had in flight toward us is delivered (records
    /// already in the ring), what we had toward it fails.
    /// Why a peer usually goes: what its backend's notice says.
    static let peerClosedReason = "closed its endpoint or its process died"

    /// The error for operations toward peer `p` (at `a`) once it went away.
    func departure(_ p: Int32, _ a: MXEndpointAddress) -> MXError {
        MXError(.peerClosed, "peer \(a) \(departures[p] ?? Self.peerClosedReason)", peer: a)
    }

    mutating func peerGone(_ p: Int32, reason: String = EndpointCore.peerClosedReason, hostLost: Bool = false) {
        // Deliver what already arrived.
        while let cell = peers[Int(p)].inbound.peek() {
            handleRecord(p, cell, kind: peers[Int(p)].inbound.recordKind, length: peers[Int(p)].inbound.recordLength)
            peers[Int(p)].inbound.release(cell)
        }
        peers[Int(p)].alive = false
        departures[p] = reason
        let err = departure(p, address(ofPeer: p)!)
        if hostLost {
            hostLosses &+= 1
            lastHostLoss = err
        }
        for i in 0..<Int32(requests.count) where requests.isAllocated(i) {
            let s = requests[i]
            guard s.pointee.state == RequestState.pending else { continue }
            // Sends toward it, receives still pulling from it over the wire, receives posted for
            // it alone (MXSender.peer), and, when its host is lost, those from any peer that
            // asked to fail then (MXSender.anyPeer).
            let posted = s.pointee.flags & RequestFlag.posted != 0
            if (s.pointee.peer == p && (s.pointee.kind == MXStatus.Kind.send.rawValue || posted
                                        || s.pointee.flags & RequestFlag.pulling != 0))
                || (hostLost && posted && s.pointee.flags & RequestFlag.failsOnHostLoss != 0) {
                fail(i, err)
            }
        }
        if let l = peers[Int(p)].transport.link { wire.drop(l) }
        pulls.drop(peer: p)
        // Rendezvous descriptors from it can no longer be pulled.
        for u in engine.unexpectedIDs() where unexpected[u].pointee.peer == p && unexpected[u].pointee.kind == RecordKind.rendezvous.rawValue {
            engine.removeUnexpected(u)
            unexpected.free(u)
            count(.drops)
        }
        pendingNotifies.removeAll { $0.peer == p }
    }

    /// The backend died: every pending request fails.
    mutating func failAll(_ error: MXError) {
        for i in 0..<Int32(requests.count) where requests.isAllocated(i) && requests[i].pointee.state == RequestState.pending {
            fail(i, error)
        }
    }
}
