#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// The pull engine by copy: a rendezvous message moved in pieces through the pair's own
/// transport, after the receiver asked for it (`pullRequest`), each piece a `pullReply` record.
/// Between hosts this is the only way (the pieces are frames); between endpoints of one host
/// it is the fast way when both can run at once: the sender copies a piece into the pair ring
/// while the receiver copies the one before out of it, two cache-speed copies on two cores,
/// where a cross-memory-attach pull is one copy at a quarter of memcpy's speed
/// (docs/performance.md). The sender serves only what lies inside the region its rendezvous
/// named; the receiver takes only pieces of a pull it asked for, in order.

/// A rendezvous send being served to its receiver, piece by piece, through the pair's transport.
struct OutgoingPull {
    var peer: Int32
    var request: Int32
    var source: UnsafeRawPointer
    var length: Int
    var sent: Int
    var receiverHandle: UInt64
}

/// A pull request that waits for room toward its peer (ring or window).
struct PendingPull {
    var request: Int32
    /// The request's generation: a slot freed and reused meanwhile is not this pull.
    var generation: UInt32
    var peer: Int32
    var region: UInt32
    var regionGeneration: UInt32
    var offset: UInt64
}

/// The pulls an endpoint serves and those it waits to ask for (or refuse).
struct PullState {
    var outgoing: [OutgoingPull] = []
    var pending: [PendingPull] = []
    /// Replies without data (refusals, a split's `pushed`) that wait for room: the peer, the
    /// receiver's request, the flags and the count the reply carries (bytes written, in its
    /// match info: a reply's length is the data it holds inline, none).
    var replies: [(peer: Int32, receiver: UInt64, flags: UInt8, written: Int)] = []
    /// Receives whose transfer needs their sender, under way now; how many ever began; and the
    /// time spent in timed pulls (LocalPaths.swift: a sample taken while others ran is not fair).
    var active: Int32 = 0
    var started: UInt32 = 0
    var cmaNanos: UInt64 = 0

    /// Pull requests or replies waiting for room.
    var hasPending: Bool { !pending.isEmpty || !replies.isEmpty }

    /// Forgets everything toward peer `p` (gone).
    mutating func drop(peer p: Int32) {
        outgoing.removeAll { $0.peer == p }
        pending.removeAll { $0.peer == p }
        replies.removeAll { $0.peer == p }
    }
}

extension EndpointCore {
    /// The piece of a message of `length` bytes copied through a ring whose largest is
    /// `maxPiece`: an eighth of the message, between 8 KiB and `maxPiece`, so a medium message
    /// is already in several pieces (the two copies overlap) and a long one in few, large ones
    /// (fewer hand-overs). Measured in docs/performance.md.
    @inline(__always)
    static func ringPiece(_ length: Int, _ maxPiece: Int) -> Int {
        min(maxPiece, max(8192, (length / 8) & ~(RingLayout.cellSize - 1)))
    }

    /// A rendezvous send ended (completed or failed): its pieces stop going out, whatever the
    /// transport, and over the wire no frame points into its buffer any more.
    mutating func stopServing(_ r: Int32) {
        if !pulls.outgoing.isEmpty { pulls.outgoing.removeAll { $0.request == r } }
        releaseWireReferences(r)
    }

    /// Receiver: the message matched; ask the sender for what fits the buffer.
    mutating func requestPull(_ r: Int32, from p: Int32, region: UInt32, generation: UInt32, offset: UInt64,
                              length: Int, token: UInt64) {
        let s = requests[r]
        s.pointee.pullToken = token
        s.pointee.pullWant = min(length, s.pointee.length)
        s.pointee.transferred = 0
        guard s.pointee.pullWant > 0 else { return pulled(r, from: p, token: token) }
        markPulling(s)
        let pending = PendingPull(request: r, generation: s.pointee.generation, peer: p, region: region,
                                  regionGeneration: generation, offset: offset)
        if !writePullRequest(pending) { pulls.pending.append(pending) }
    }

    mutating func writePullRequest(_ q: PendingPull) -> Bool {
        guard let cell = reserveRecord(Int(q.peer), payload: RecordLayout.rndvPayloadSize) else { return false }
        let s = requests[q.request]
        Record.write(cell, kind: .pullRequest, length: s.pointee.pullWant,
                     matchInfo: Record.token(q.request, s.pointee.generation), aux: s.pointee.pullToken)
        Record.writeRegion(cell, region: q.region, generation: q.regionGeneration, offset: q.offset)
        publishRecord(Int(q.peer), cell)
        return true
    }

    /// Pull requests (and refusals) that waited for window room: each goes once its own
    /// peer's window has room (a full window toward one peer holds up no other).
    mutating func flushPendingPulls() -> Bool {
        let before = pulls.replies.count + pulls.pending.count
        var replies = pulls.replies
        replies.removeAll { q in !peers[Int(q.peer)].alive || writeReply(q.peer, q.receiver, flags: q.flags, written: q.written) }
        pulls.replies = replies
        var pending = pulls.pending
        pending.removeAll { q in
            let s = requests[q.request]
            guard s.pointee.state == RequestState.pending, s.pointee.generation == q.generation,
                  s.pointee.flags & RequestFlag.pulling != 0 else { return true }
            return writePullRequest(q)
        }
        pulls.pending = pending
        return pulls.replies.count + pulls.pending.count < before
    }

    /// Sender: the receiver asks for the data. The region is checked against our own table
    /// (a pull serves only what lies inside the region), then the pieces go out as the
    /// transport has room.
    mutating func servePull(_ p: Int32, _ cell: UnsafeMutableRawPointer, length want: Int) {
        let receiver = Record.matchInfo(cell)
        guard let (r, source) = servedSend(p, cell, want: want) else { return }
        guard !pulls.outgoing.contains(where: { $0.request == r }) else {
            count(.refusedPulls)
            return reply(p, receiver, flags: RecordFlags.refused, written: 0)
        }
        pulls.outgoing.append(OutgoingPull(peer: p, request: r, source: source, length: want, sent: 0, receiverHandle: receiver))
        _ = pumpPulls()
    }

    /// Sender: the send a pull or push request names, and where its first `want` bytes are.
    /// The request must name one of our pending rendezvous sends to that peer, and its own
    /// region as its rendezvous named it: the peer chooses nothing but the length, and only
    /// what lies inside the region is served. Nil: refused (and answered so); asking outside
    /// the region also fails the send.
    mutating func servedSend(_ p: Int32, _ cell: UnsafeMutableRawPointer, want: Int) -> (Int32, UnsafeRawPointer)? {
        let token = Record.aux(cell)
        let receiver = Record.matchInfo(cell)
        let asked = Record.region(cell)
        let r = Int32(bitPattern: UInt32(truncatingIfNeeded: token))
        let s: UnsafeMutablePointer<RequestSlot>? = r >= 0 && Int(r) < requests.count ? requests[r] : nil
        guard let s, s.pointee.generation == UInt32(truncatingIfNeeded: token >> 32),
              s.pointee.state == RequestState.pending, s.pointee.peer == p,
              s.pointee.flags & (RequestFlag.awaitingNotify | RequestFlag.rendezvous) == RequestFlag.awaitingNotify | RequestFlag.rendezvous else {
            count(.refusedPulls)
            reply(p, receiver, flags: RecordFlags.refused, written: 0)
            return nil
        }
        guard want <= s.pointee.length, s.pointee.regionID >= 0,
              asked.id == UInt32(s.pointee.regionID), asked.generation == s.pointee.regionGeneration,
              asked.offset == s.pointee.regionOffset,
              let address = RegionTable.resolve(page: protectedPage, id: UInt32(s.pointee.regionID),
                                                generation: s.pointee.regionGeneration,
                                                offset: s.pointee.regionOffset, length: UInt64(want)) else {
            count(.refusedPulls)
            reply(p, receiver, flags: RecordFlags.refused, written: 0)
            s.pointee.flags &= ~RequestFlag.awaitingNotify
            unpinRegion(r)
            fail(r, MXError(.pullRefused, "the receiver asked for \(want) bytes outside the message's region; pull refused"))
            return nil
        }
        return (r, UnsafeRawPointer(bitPattern: UInt(address))!)
    }

    /// A reply without data to the receiver's request `receiver`: now, or once there is room.
    mutating func reply(_ p: Int32, _ receiver: UInt64, flags: UInt8, written: Int) {
        if !writeReply(p, receiver, flags: flags, written: written) { pulls.replies.append((p, receiver, flags, written)) }
    }

    mutating func writeReply(_ p: Int32, _ receiver: UInt64, flags: UInt8, written: Int) -> Bool {
        guard let cell = reserveRecord(Int(p), payload: 0) else { return false }
        Record.write(cell, kind: .pullReply, flags: flags, length: 0, matchInfo: UInt64(written), aux: receiver)
        publishRecord(Int(p), cell)
        return true
    }

    /// Sends pieces of the pulls being served while their transports have room: a frame that
    /// points into the send buffer (no copy until it must be kept), or a record of the pair
    /// ring that the piece is copied into.
    mutating func pumpPulls() -> Bool {
        var progressed = false
        var i = 0
        while i < pulls.outgoing.count {
            var op = pulls.outgoing[i]
            let p = Int(op.peer)
            let transport = peers[p].transport
            if peers[p].alive && requests[op.request].pointee.state == RequestState.pending {
                pieces: while op.sent < op.length {
                    let piece: Int
                    switch transport {
                    case .wire(let l):
                        piece = min(wire.links![Int(l)].pieceBytes, op.length - op.sent)
                        guard let cell = wire.reserve(l, payload: 0) else { break pieces }
                        writePieceHeader(cell, op, piece)
                        wire.attach(l, op.source + op.sent, piece, owner: op.request)
                        wire.commit(l, pump: false)
                    case .ring:
                        piece = min(EndpointCore.ringPiece(op.length, peers[p].out.maxPiece), op.length - op.sent)
                        guard let cell = peers[p].out.reserve(payload: piece) else { break pieces }
                        writePieceHeader(cell, op, piece)
                        Record.payload(cell).copyMemory(from: op.source + op.sent, byteCount: piece)
                        publishRecord(p, cell)
                    }
                    op.sent += piece
                    progressed = true
                }
                // The pieces queued go in batches, each one system call.
                if let l = transport.link { wire.pump(l) }
                if op.sent < op.length {
                    pulls.outgoing[i] = op
                    i += 1
                    continue
                }
            }
            pulls.outgoing.remove(at: i)
        }
        return progressed
    }

    @inline(__always)
    func writePieceHeader(_ cell: UnsafeMutableRawPointer, _ op: OutgoingPull, _ piece: Int) {
        Record.write(cell, kind: .pullReply, length: piece, matchInfo: UInt64(op.sent), aux: op.receiverHandle)
    }

    /// Receiver: a piece of the message (in order: the link delivers in sequence), a refusal,
    /// or the sender's word that its half of a split message is written.
    mutating func receivePiece(_ p: Int32, _ cell: UnsafeMutableRawPointer, length: Int) {
        let handle = Record.aux(cell)
        let r = Int32(bitPattern: UInt32(truncatingIfNeeded: handle))
        guard r >= 0 && Int(r) < requests.count else { count(.drops); return }
        let s = requests[r]
        guard s.pointee.generation == UInt32(truncatingIfNeeded: handle >> 32), s.pointee.state == RequestState.pending,
              s.pointee.flags & RequestFlag.pulling != 0, s.pointee.peer == p else { count(.drops); return }
        if Record.flags(cell) & RecordFlags.pushed != 0 {
            return receivePushed(r, from: p, flags: Record.flags(cell), written: Int(truncatingIfNeeded: Record.matchInfo(cell)))
        }
        if Record.flags(cell) & RecordFlags.refused != 0 {
            clearPulling(s)
            count(.refusedPulls)
            return fail(r, MXError(.pullRefused, "the sender refused the pull of its \(s.pointee.messageLength)-byte message"))
        }
        let offset = s.pointee.transferred
        guard Record.matchInfo(cell) == UInt64(offset), length > 0,
              length <= s.pointee.pullWant - offset else {
            return peerGone(p, reason: "sent a piece of a pull that was not asked for")
        }
        scatter(s, from: Record.payload(cell), count: length, at: offset)
        s.pointee.transferred += length
        if s.pointee.transferred == s.pointee.pullWant {
            clearPulling(s)
            stopTiming(s, peer: p)
            pulled(r, from: p, token: s.pointee.pullToken)
        }
    }

    /// Copies `n` bytes to `offset` of a receive's buffer(s) (the caller checked they fit).
    mutating func scatter(_ s: UnsafeMutablePointer<RequestSlot>, from src: UnsafeRawPointer, count n: Int, at offset: Int) {
        guard let v = s.pointee.segments else {
            (s.pointee.buffer! + offset).copyMemory(from: src, byteCount: n)
            return
        }
        var skip = offset
        var done = 0
        for i in 0..<Int(s.pointee.segmentCount) where done < n {
            let len = v[i].iov_len
            if skip >= len { skip -= len; continue }
            let k = min(len - skip, n - done)
            (v[i].iov_base! + skip).copyMemory(from: src + done, byteCount: k)
            done += k
            skip = 0
        }
    }

}
