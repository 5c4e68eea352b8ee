import XCTest
@testable import MyriXen
#if canImport(Glibc)
import Glibc
#endif

/// The endpoint protocol (eager, rendezvous, synchronous sends, notifies, backlog, truncation,
/// peers going away) with no backend and no second process: two endpoint cores wired together
/// by rings in ordinary memory, the in-memory transport.
final class CoreProtocolTests: XCTestCase {
    var memory: [(UnsafeMutableRawPointer, Int)] = []
    var a: UnsafeMutablePointer<EndpointCore>!
    var b: UnsafeMutablePointer<EndpointCore>!
    var protectedA: UnsafeMutableRawPointer!

    func page(_ size: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        memory.append((p, size))
        return p
    }

    override func setUp() {
        let ringData = 16 * 1024
        let ab = page(RingLayout.headerPage + ringData), ba = page(RingLayout.headerPage + ringData)
        formatRing(ab, dataBytes: ringData)
        formatRing(ba, dataBytes: ringData)
        protectedA = page(ProtectedPage.size)
        let unprotectedA = page(UnprotectedPage.size)
        let protectedB = page(ProtectedPage.size), unprotectedB = page(UnprotectedPage.size)
        a = .allocate(capacity: 1)
        b = .allocate(capacity: 1)
        a.initialize(to: EndpointCore(protectedPage: protectedA, unprotected: unprotectedA, threshold: 4096, localPath: .pieces(upTo: Int.max)))
        b.initialize(to: EndpointCore(protectedPage: protectedB, unprotected: unprotectedB, threshold: 4096, localPath: .pieces(upTo: Int.max)))
        let cells = ringData / RingLayout.cellSize
        func peer(out: UnsafeMutableRawPointer, inbound: UnsafeMutableRawPointer, prot: UnsafeMutableRawPointer,
                  unprot: UnsafeMutableRawPointer, id: UInt16) -> Peer {
            Peer(nicID: 0x02_0000_0000_00, endpointID: id, session: 1, pid: getpid(), alive: true, isSelf: false,
                 out: RingProducer(base: out, cells: cells), inbound: RingConsumer(base: inbound, cells: cells),
                 peerProtected: UnsafeRawPointer(prot), peerUnprotected: UnsafeRawPointer(unprot), eventFD: -1, mappings: [], eagerMax: 4096)
        }
        a.pointee.peers.initialize(to: peer(out: ab, inbound: ba, prot: protectedB, unprot: unprotectedB, id: 1))
        a.pointee.peerCount = 1
        b.pointee.peers.initialize(to: peer(out: ba, inbound: ab, prot: protectedA, unprot: unprotectedA, id: 0))
        b.pointee.peerCount = 1
    }

    override func tearDown() {
        a.pointee.destroy(); a.deallocate()
        b.pointee.destroy(); b.deallocate()
        for (p, _) in memory { p.deallocate() }
    }

    // MARK: driving the cores

    var nextRegion = 0

    func send(_ buffer: UnsafeRawBufferPointer, tag: UInt64, sync: Bool = false) -> Int32 {
        let r = a.pointee.allocateRequest(kind: .send)
        let s = a.pointee.requests[r]
        s.pointee.peer = 0
        s.pointee.matchInfo = tag
        s.pointee.buffer = UnsafeMutableRawPointer(mutating: buffer.baseAddress)
        s.pointee.length = buffer.count
        s.pointee.messageLength = buffer.count
        if buffer.count > a.pointee.threshold {
            // What the backend does for a registration, done by hand on A's protected page.
            let id = nextRegion
            nextRegion += 1
            let base = UInt64(UInt(bitPattern: buffer.baseAddress))
            let generation = RegionTable(protectedPage: protectedA).install(id: id, base: base, length: UInt64(buffer.count))
            _ = a.pointee.cache.insert(base: base, length: UInt64(buffer.count), regionID: UInt32(id), generation: generation)
            s.pointee.flags |= RequestFlag.rendezvous
            s.pointee.regionID = Int32(id)
            s.pointee.regionGeneration = generation
        } else if sync {
            s.pointee.flags |= RequestFlag.sync
        }
        a.pointee.submit(r)
        return r
    }

    func receive(_ buffer: UnsafeMutableRawBufferPointer, tag: UInt64, mask: UInt64 = .max) -> Int32 {
        b.pointee.postReceive(buffer.baseAddress, length: buffer.count, matchInfo: tag, mask: mask, context: 0)
    }

    func done(_ core: UnsafeMutablePointer<EndpointCore>, _ r: Int32) -> Bool {
        core.pointee.requests[r].pointee.state == RequestState.done
    }

    /// Both sides progress until `r` on `core` is done (bounded: a stuck protocol fails the test).
    func run(until core: UnsafeMutablePointer<EndpointCore>, _ r: Int32, file: StaticString = #filePath, line: UInt = #line) throws -> MXStatus {
        for _ in 0..<100_000 {
            if done(core, r) { return try core.pointee.finish(r) }
            _ = a.pointee.progress()
            _ = b.pointee.progress()
        }
        XCTFail("request never completed", file: file, line: line)
        throw MXError(.timeout, "stuck")
    }

    // MARK: tests

    func testEagerMessagesKeepTheirOrderThroughABackloggedRing() throws {
        // 600 messages of mixed sizes overflow the 16 KiB ring before B reads anything.
        let sizes = [0, 8, 32, 100, 700, 4096]
        let total = 600
        let data = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 * total, alignment: 64)
        defer { data.deallocate() }
        var sends: [Int32] = []
        for k in 0..<total {
            let view = UnsafeMutableRawBufferPointer(rebasing: data[(k * 4096)..<(k * 4096 + sizes[k % sizes.count])])
            for i in 0..<view.count { view[i] = UInt8(truncatingIfNeeded: k &+ i) }
            sends.append(send(UnsafeRawBufferPointer(view), tag: UInt64(k)))
        }
        XCTAssertGreaterThan(a.pointee.backlogged, 0, "the ring filled and sends queued behind it")
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { out.deallocate() }
        for k in 0..<total {
            let st = try run(until: b, receive(out, tag: 0, mask: 0))
            XCTAssertEqual(st.matchInfo, UInt64(k), "per-pair order")
            XCTAssertEqual(st.messageLength, sizes[k % sizes.count])
            for i in 0..<st.messageLength where out[i] != UInt8(truncatingIfNeeded: k &+ i) {
                return XCTFail("message \(k) byte \(i)")
            }
        }
        for s in sends { _ = try run(until: a, s) }
        XCTAssertEqual(a.pointee.backlogged, 0)
    }

    func testRendezvousPullsAndTheNotifyCarriesWhatWasTaken() throws {
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 100_000, alignment: 64)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 100_000, alignment: 64)
        defer { big.deallocate(); out.deallocate() }
        out.initializeMemory(as: UInt8.self, repeating: 0)
        for i in 0..<big.count { big[i] = UInt8(truncatingIfNeeded: i * 7) }
        let s = send(UnsafeRawBufferPointer(big), tag: 5)
        _ = b.pointee.progress()
        XCTAssertEqual(b.pointee.engine.unexpectedCount, 1, "an unexpected rendezvous, without data")
        XCTAssertFalse(done(a, s), "a rendezvous send waits for the receiver's notify")
        let st = try run(until: b, receive(UnsafeMutableRawBufferPointer(rebasing: out[0..<60_000]), tag: 5))
        XCTAssertEqual(st.messageLength, 100_000)
        XCTAssertEqual(st.transferredLength, 60_000)
        XCTAssertTrue(out[0..<60_000].elementsEqual(big[0..<60_000]))
        XCTAssertEqual(out[60_000], 0, "nothing past the receive buffer")
        XCTAssertEqual(try run(until: a, s).transferredLength, 60_000)
        XCTAssertEqual(a.pointee.cache.entries[0].pins, 0, "the region is unpinned once the send is over")
    }

    func testAPullOutsideItsRegionIsRefusedOnBothSides() throws {
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 64)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 64)
        defer { big.deallocate(); out.deallocate() }
        let s = send(UnsafeRawBufferPointer(big), tag: 1)
        // The region shrinks behind the send's back: the pull would leave it.
        RegionTable(protectedPage: protectedA).remove(id: 0)
        let r = receive(out, tag: 1)
        XCTAssertThrowsError(try run(until: b, r)) { XCTAssertEqual(($0 as? MXError)?.code, .pullRefused) }
        XCTAssertThrowsError(try run(until: a, s)) { XCTAssertEqual(($0 as? MXError)?.code, .pullRefused) }
        XCTAssertEqual(b.pointee.unprotected.load(fromByteOffset: MXCounter.refusedPulls.offset, as: UInt64.self), 1)
    }

    func testSynchronousSendCompletesOnMatchOnly() throws {
        var v: UInt64 = 0xABCD
        try withUnsafeBytes(of: &v) { vb in
            let s = send(vb, tag: 3, sync: true)
            for _ in 0..<100 { _ = a.pointee.progress(); _ = b.pointee.progress() }
            XCTAssertFalse(done(a, s))
            var got: UInt64 = 0
            _ = try withUnsafeMutableBytes(of: &got) { try run(until: b, receive($0, tag: 3)) }
            XCTAssertEqual(got, 0xABCD)
            XCTAssertEqual(try run(until: a, s).transferredLength, 8)
        }
    }

    func testAPeerGoingAwayFailsWhatWaitsForIt() throws {
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 10_000, alignment: 64)
        defer { big.deallocate() }
        var v: UInt64 = 1
        let s1 = send(UnsafeRawBufferPointer(big), tag: 1)
        let s2 = withUnsafeBytes(of: &v) { send($0, tag: 2, sync: true) }
        a.pointee.peerGone(0)
        XCTAssertThrowsError(try a.pointee.finish(s1)) { XCTAssertEqual(($0 as? MXError)?.code, .peerClosed) }
        XCTAssertThrowsError(try a.pointee.finish(s2)) { XCTAssertEqual(($0 as? MXError)?.code, .peerClosed) }
        XCTAssertEqual(a.pointee.cache.entries[0].pins, 0)
    }

    /// Receives that say who sends (MXSender): one for the peer alone fails once it is gone,
    /// unless its message came first; one from any peer fails only across a host loss; one
    /// that names nobody waits whatever happens (MX's own semantics).
    func testReceivesForAPeerFailWhenItIsGoneAndOnlyThen() throws {
        let fromA = b.pointee.address(ofPeer: 0)!
        var v: UInt64 = 7
        _ = withUnsafeBytes(of: &v) { send($0, tag: 1) }
        _ = b.pointee.progress()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer { out.deallocate() }
        func post(_ tag: UInt64, _ sender: MXSender) -> Int32 {
            b.pointee.postReceive(out.baseAddress, length: out.count, matchInfo: tag, mask: .max, context: 0, sender: sender)
        }
        let arrived = post(1, .peer(fromA))     // its message is already here: matched at once
        let bound = post(2, .peer(fromA))
        let anyBefore = post(3, .anyPeer)
        let unbound = post(4, .unknown)
        XCTAssertEqual(try b.pointee.finish(arrived).transferredLength, 8)
        b.pointee.peerGone(0, reason: "is on a lost host", hostLost: true)
        XCTAssertThrowsError(try b.pointee.finish(bound)) {
            XCTAssertEqual(($0 as? MXError)?.code, .peerClosed)
            XCTAssertEqual(($0 as? MXError)?.peer, fromA, "the error names the peer")
        }
        XCTAssertThrowsError(try b.pointee.finish(anyBefore)) { XCTAssertEqual(($0 as? MXError)?.code, .peerClosed) }
        XCTAssertFalse(done(b, unbound), "a receive that names no sender keeps waiting")
        // Afterwards: a receive for the gone peer fails at once; one from any peer waits.
        let boundAfter = post(5, .peer(fromA))
        XCTAssertThrowsError(try b.pointee.finish(boundAfter)) {
            XCTAssertTrue(($0 as? MXError)?.message.contains("is on a lost host") == true, "\($0)")
        }
        let anyAfter = post(6, .anyPeer)
        XCTAssertFalse(done(b, anyAfter), "a loss before it was posted does not fail it")
        XCTAssertEqual(b.pointee.senderGone(.anyPeer, since: b.pointee.hostLosses), nil)
        XCTAssertNotNil(b.pointee.senderGone(.anyPeer, since: b.pointee.hostLosses &- 1), "a probe waiting across the loss fails")
    }

    /// A push request (the receiver's half of a split) makes the sender write into the
    /// receiver's memory: it is served only for a pending rendezvous send of ours to that
    /// peer, and never toward a peer in this very process (nothing to split there). Each
    /// refusal is counted and answered, and the send it named goes on.
    func testAPushRequestIsRefusedUnlessItNamesOurSendToAPeerOfAnotherProcess() throws {
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 64)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 64)
        defer { big.deallocate(); out.deallocate() }
        let s = send(UnsafeRawBufferPointer(big), tag: 9)
        let token = Record.token(s, a.pointee.requests[s].pointee.generation)
        func push(aux: UInt64) {
            guard let cell = b.pointee.peers[0].out.reserve(payload: RecordLayout.pushPayloadSize) else { return XCTFail("no room") }
            Record.write(cell, kind: .pushRequest, length: 20_000, matchInfo: 0x1234, aux: aux)
            Record.writeRegion(cell, region: 0, generation: a.pointee.requests[s].pointee.regionGeneration, offset: 0)
            Record.writePush(cell, from: 8192, into: UInt64(UInt(bitPattern: out.baseAddress!)) + 8192)
            b.pointee.peers[0].out.publish(cell)
            _ = a.pointee.progress()
        }
        func refused() -> UInt64 { a.pointee.unprotected.load(fromByteOffset: MXCounter.refusedPulls.offset, as: UInt64.self) }
        push(aux: token &+ (1 << 32))  // a stale generation
        XCTAssertEqual(refused(), 1)
        push(aux: token)               // our send, but the peer is in this process
        XCTAssertEqual(refused(), 2)
        XCTAssertEqual(a.pointee.unprotected.load(fromByteOffset: MXCounter.splitPushes.offset, as: UInt64.self), 0)
        XCTAssertFalse(done(a, s), "the send named goes on")
        // The refusals reach B, which had asked nothing: dropped there.
        _ = b.pointee.progress()
        XCTAssertEqual(b.pointee.unprotected.load(fromByteOffset: MXCounter.drops.offset, as: UInt64.self), 2)
        // And the message still arrives whole.
        for i in 0..<big.count { big[i] = UInt8(truncatingIfNeeded: i * 3) }
        let st = try run(until: b, receive(out, tag: 9))
        XCTAssertEqual(st.transferredLength, 20_000)
        XCTAssertTrue(out.elementsEqual(big))
        XCTAssertEqual(try run(until: a, s).transferredLength, 20_000)
    }

    func testAMalformedRecordEndsThePeerNotTheProcess() throws {
        // A writes garbage geometry into its ring toward B.
        guard let cell = a.pointee.peers[0].out.reserve(payload: 8) else { return XCTFail("no room") }
        Shm.store(cell, RecordLayout.kindOffset, RecordKind.eager.rawValue)
        Shm.store(cell, RecordLayout.lengthOffset, UInt32.max)
        a.pointee.peers[0].out.publish(cell)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer { out.deallocate() }
        _ = receive(out, tag: 0, mask: 0)
        _ = b.pointee.progress()
        XCTAssertFalse(b.pointee.peers[0].alive)
        XCTAssertEqual(b.pointee.unprotected.load(fromByteOffset: MXCounter.drops.offset, as: UInt64.self), 1)
    }
}

/// The benchmarks' --validate pattern (mx_pingpong, mpi_pingpong): a check that cannot miss
/// what it is there to catch.
final class PatternTests: XCTestCase {
    func testThePatternCatchesAWrongByteAnotherSeedAShiftAndNothingReceived() {
        let n = 4096
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: n + 1, alignment: 8)
        defer { buffer.deallocate() }
        let b = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
        MXPattern.fill(b, seed: 7)
        XCTAssertNil(MXPattern.firstMismatch(UnsafeRawBufferPointer(b), seed: 7))
        b[1234] ^= 0x10
        XCTAssertEqual(MXPattern.firstMismatch(UnsafeRawBufferPointer(b), seed: 7), 1234, "one flipped bit")
        for other in [8, 6, 7 + 255 * 3 + 1, -7] {
            MXPattern.fill(b, seed: other)
            XCTAssertEqual(MXPattern.firstMismatch(UnsafeRawBufferPointer(b), seed: 7), 0, "seed \(other) differs at once")
        }
        MXPattern.fill(buffer, seed: 7)
        XCTAssertNotNil(MXPattern.firstMismatch(UnsafeRawBufferPointer(rebasing: buffer[1...]), seed: 7), "a copy shifted by one")
        b.initializeMemory(as: UInt8.self, repeating: 0)
        XCTAssertEqual(MXPattern.firstMismatch(UnsafeRawBufferPointer(b), seed: 7), 0, "a cleared buffer (nothing received) fails")
        XCTAssertFalse((0..<1000).contains { k in (0..<300).contains { s in MXPattern.byte(k, seed: s) == 0 } }, "the pattern is never 0")
        XCTAssertEqual(MXPattern.byte(0, seed: 0), 8)
    }
}
