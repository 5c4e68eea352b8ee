import XCTest
@testable import MyriXen
import MyriXenTestSupport
import CMyriXen
#if canImport(Glibc)
import Glibc
#endif

/// Two hosts on one wire: two backends, each with its own wire address on the loopback network
/// (127.0.0.0/8 is all local), and one endpoint on each. Everything between them crosses real
/// UDP sockets: connect through both backends, frames, acks, resends and pulls.
final class WireTests: XCTestCase {
    var hostA: TestBackend!
    var hostB: TestBackend!
    var mxA: MXContext!
    var mxB: MXContext!
    var a: MXEndpoint!
    var b: MXEndpoint!
    var toB: MXEndpointAddress!
    var toA: MXEndpointAddress!
    let subnet = "127.\(getpid() % 200 + 20).\(Int.random(in: 1...250))"

    override func setUpWithError() throws {
        try open()
    }

    /// `mtu`: both backends' `--wire-mtu` (nil: the loopback's, 64 KiB); `environment`: the
    /// endpoints' wire knobs while they connect (when they read them).
    func open(mtu: Int? = nil, environment: [String: String] = [:]) throws {
        let options = mtu.map { ["--wire-mtu", String($0)] } ?? []
        hostA = try TestBackend(wire: "\(subnet).1", arguments: options)
        hostB = try TestBackend(wire: "\(subnet).2", arguments: options)
        mxA = try hostA.context()
        mxB = try hostB.context()
        a = try mxA.openEndpoint(key: 0xA)
        b = try mxB.openEndpoint(key: 0xB)
        for (k, v) in environment { setenv(k, v, 1) }
        defer { for k in environment.keys { unsetenv(k) } }
        toB = try a.connect(nicID: b.nicID, endpointID: b.endpointID, key: 0xB)
        toA = try b.connect(nicID: a.nicID, endpointID: a.endpointID, key: 0xA)
    }

    override func tearDown() {
        // One thread plays both hosts: let the last acks cross before closing (a closing
        // endpoint waits for its frames to be acked, and here nobody else would progress).
        let deadline = monotonicNanoseconds() + 2_000_000_000
        while let a, let b, !a.isClosed, !b.isClosed, a.core.pointee.wireAwaitsAcks || b.core.pointee.wireAwaitsAcks,
              monotonicNanoseconds() < deadline {
            try? a.progress()
            try? b.progress()
        }
        a?.close()
        b?.close()
        mxA?.finalize()
        mxB?.finalize()
        hostA?.stop()
        hostB?.stop()
    }

    /// One thread plays both hosts: progresses both until every request is done, then
    /// collects them (in order).
    func finish(_ requests: [(MXEndpoint, MXRequest)], seconds: Double = 20) throws -> [MXStatus] {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while try !requests.allSatisfy({ try $0.0.isComplete($0.1) }) {
            try a.progress()
            try b.progress()
            guard monotonicNanoseconds() < deadline else { throw MXError(.timeout, "requests did not complete in \(seconds) s") }
        }
        return try requests.map { try $0.0.wait($0.1) }
    }

    func exchange(size: Int, receiveSize: Int? = nil, sync: Bool = false, segments: Bool = false) throws -> (MXStatus, MXStatus) {
        let capacity = receiveSize ?? size
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        Pattern.fill(src, seed: size)
        dst.initializeMemory(as: UInt8.self, repeating: 0)
        let s = UnsafeRawBufferPointer(rebasing: src[0..<size])
        let send = sync ? try a.issend(s, to: toB, matchInfo: UInt64(size)) : try a.isend(s, to: toB, matchInfo: UInt64(size))
        let recv: MXRequest
        if segments {
            // Three uneven pieces: pieces of a pull land across segment boundaries.
            let cuts = [0, capacity / 3, capacity / 3 + 1, capacity]
            let segs = (0..<3).map { MXSegment(dst.baseAddress! + cuts[$0], length: cuts[$0 + 1] - cuts[$0]) }
            recv = try segs.withUnsafeBufferPointer { try b.irecv(segments: $0, matchInfo: UInt64(size)) }
        } else {
            recv = try b.irecv(UnsafeMutableRawBufferPointer(rebasing: dst[0..<capacity]), matchInfo: UInt64(size))
        }
        let st = try finish([(b, recv), (a, send)])
        let got = min(size, capacity)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: dst[0..<got]), seed: size), "size \(size)")
        if capacity > got { XCTAssertTrue(dst[got..<capacity].allSatisfy { $0 == 0 }, "nothing written past the message") }
        return (st[0], st[1])
    }

    func testBoardsOnAWireAreNamedAfterTheirAddress() throws {
        let ipB = cmx_parse_ipv4("\(subnet).2")
        XCTAssertEqual(b.nicID, NICAddressing.nicID(ipv4: ipB, board: 0))
        XCTAssertEqual(try mxA.hostnameToNICID("\(subnet).2"), b.nicID)
        XCTAssertEqual(try mxA.nicIDToHostname(b.nicID), "\(subnet).2:0")
        XCTAssertThrowsError(try mxA.hostnameToNICID("10.99.0.1")) { XCTAssertEqual(($0 as? MXError)?.code, .unknownHost) }
        XCTAssertEqual(toB.nicID, b.nicID)
        XCTAssertEqual(toA.nicID, a.nicID)
        XCTAssertEqual(try mxA.info().wire, "\(subnet).1:\(MXWire.port)")
        XCTAssertTrue(MXInfoReport.render(try mxB.info()).contains("wire: UDP \(subnet).2:2314"))
    }

    func testEverySizeCrossesTheWireIntact() throws {
        for size in [0, 1, 32, 128, 4096, 32_768, 32_769, 100_000, 4 << 20] {
            let (r, s) = try exchange(size: size)
            XCTAssertEqual(r.messageLength, size)
            XCTAssertEqual(r.transferredLength, size)
            XCTAssertEqual(r.source?.nicID, a.nicID)
            XCTAssertEqual(r.source?.endpointID, a.endpointID)
            XCTAssertEqual(s.transferredLength, size)
        }
        XCTAssertGreaterThan(a.counter(.framesSent), 0)
        XCTAssertGreaterThan(b.counter(.rendezvousPulls), 0, "above the threshold the receiver pulls")
        XCTAssertEqual(b.counter(.drops), 0)
        let report = MXInfoReport.render(try mxA.info())
        XCTAssertTrue(report.contains("wire: \(a.counter(.framesSent)) frames sent in \(a.counter(.frameSends)) sends, \(a.counter(.framesReceived)) received in \(a.counter(.frameReceives)) receives"), report)
    }

    /// Every size class and the sizes one below, at and one above each boundary of the wire's
    /// framing, at MTU 1500, 9000 and the loopback's, with segmentation offload on and off:
    /// whole, truncated and into segments, byte for byte; no frame larger than the MTU allows;
    /// frames go in batches (runs the kernel cuts, or sendmmsg) and, with offload, arrive
    /// coalesced.
    func testEveryFramingBoundaryAtEveryMTUWithAndWithoutOffload() throws {
        for mtu in [1500, 9000, nil] {
            for offload in [true, false] {
                tearDown()
                try open(mtu: mtu, environment: offload ? [:] : [MXWire.offloadEnvironment: "0"])
                let frame = MXWire.frameLimit(mtu: mtu ?? 65_536)
                let inline = WireState.headBytes - FrameLayout.headerSize - RecordLayout.headerSize
                let oneFrame = frame - FrameLayout.headerSize - RecordLayout.headerSize
                let chunk = frame - FrameLayout.headerSize
                let threshold = MXLimits.rendezvousThresholdRemote
                var sizes = [0, 1, 8, inline, 2 * chunk - RecordLayout.headerSize, threshold, 7 * oneFrame, 1 << 20]
                    .flatMap { [$0 - 1, $0, $0 + 1] }.filter { $0 >= 0 }
                sizes += [oneFrame - 1, oneFrame, oneFrame + 1, 4 << 20]
                let label = "MTU \(mtu.map(String.init) ?? "loopback"), offload \(offload)"
                for size in Set(sizes).sorted() {
                    let (r, s) = try exchange(size: size)
                    XCTAssertEqual(r.transferredLength, size, "\(label), \(size) B")
                    XCTAssertEqual(s.transferredLength, size, "\(label), \(size) B")
                    if size > 7 {
                        let (t, _) = try exchange(size: size, receiveSize: size - 7)
                        XCTAssertEqual(t.transferredLength, size - 7, "\(label), \(size) B truncated")
                        XCTAssertTrue(t.isTruncated)
                    }
                    if size > 2 { _ = try exchange(size: size, segments: true) }
                }
                for e in [a!, b!] {
                    XCTAssertLessThanOrEqual(e.core.pointee.wire.largestFrame, frame, "\(label): no frame larger than the MTU allows")
                    XCTAssertEqual(e.counter(.drops), 0, label)
                }
                XCTAssertGreaterThan(b.core.pointee.wire.largestFrame, frame / 2, "\(label): pieces fill frames")
                // Runs of frames: a sends the data (b only requests, notifies and acks). A
                // loopback frame is as large as one system call takes.
                guard mtu != nil else { continue }
                XCTAssertLessThan(a.counter(.frameSends) * 2, a.counter(.framesSent), "\(label): frames go in batches")
                if offload {
                    XCTAssertLessThan(b.counter(.frameReceives) * 2, b.counter(.framesReceived), "\(label): runs arrive coalesced")
                } else {
                    XCTAssertEqual(b.counter(.frameReceives), b.counter(.framesReceived), "\(label): one frame per receive")
                }
            }
        }
    }

    func testSegmentsAndSynchronousSends() throws {
        for size in [10, 20_000, 300_000] {
            _ = try exchange(size: size, segments: true)
            _ = try exchange(size: size, sync: true)
        }
        // An issend does not complete before the receiver matched it.
        var x: UInt64 = 7
        let send = try withUnsafeBytes(of: &x) { try a.issend($0, to: toB, matchInfo: 1) }
        for _ in 0..<200 { try a.progress(); try b.progress() }
        XCTAssertFalse(try a.isComplete(send), "unmatched: the issend is still pending")
        var y: UInt64 = 0
        let recv = try withUnsafeMutableBytes(of: &y) { try b.irecv($0, matchInfo: 1) }
        _ = try finish([(b, recv), (a, send)])
        XCTAssertEqual(y, 7)
    }

    func testTruncationOverTheWire() throws {
        for (size, capacity) in [(100, 10), (100_000, 50_000), (1 << 20, 0)] {
            let (r, s) = try exchange(size: size, receiveSize: capacity)
            XCTAssertEqual(r.messageLength, size)
            XCTAssertEqual(r.transferredLength, capacity)
            XCTAssertTrue(r.isTruncated)
            if size > MXLimits.rendezvousThresholdRemote { XCTAssertEqual(s.transferredLength, capacity, "the sender hears what was taken") }
        }
    }

    func testOrderAndUnexpectedMessages() throws {
        // 1,000 messages of mixed sizes (166 rendezvous ones: each pins a region until pulled),
        // all sent before any receive is posted: they wait as unexpected messages (eager ones
        // of several frames gathered, rendezvous ones as descriptors) and match in order.
        let rendezvous = MXLimits.rendezvousThresholdRemote + 1
        let sizes = (0..<1000).map { i in [0, 8, 200, 5000, 100_000, rendezvous][i % 6] + i % 7 }
        var buffers = sizes.enumerated().map { (i, n) in [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: n) }
        var sends: [(MXEndpoint, MXRequest)] = []
        for i in 0..<sizes.count {
            try buffers[i].withUnsafeBytes { sends.append((a, try a.isend($0, to: toB, matchInfo: 42))) }
            if i % 16 == 0 { try b.progress(); try a.progress() }
        }
        var probed: MXStatus?
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while probed == nil && monotonicNanoseconds() < deadline {
            try a.progress()
            probed = try b.iprobe(matchInfo: 42)
        }
        XCTAssertEqual(probed?.messageLength, sizes[0])
        var inbox = [UInt8](repeating: 0, count: rendezvous + 7)
        for i in 0..<sizes.count {
            let r = try inbox.withUnsafeMutableBytes { try b.irecv($0, matchInfo: 42) }
            let st = try finish([(b, r)])[0]
            XCTAssertEqual(st.messageLength, sizes[i], "message \(i) in order")
            XCTAssertTrue(inbox[0..<sizes[i]].allSatisfy { $0 == UInt8(truncatingIfNeeded: i) }, "message \(i) intact")
        }
        _ = try finish(sends)
        XCTAssertGreaterThan(b.counter(.unexpectedMessages), 0)
        XCTAssertGreaterThan(b.counter(.rendezvousPulls), 0)
        buffers.removeAll()
    }

    func testLostFramesAreResent() throws {
        tearDown()
        // One data frame in five that each endpoint sends is lost on the way.
        try open(environment: [MXWire.dropEnvironment: "5"])
        for round in 0..<40 {
            for size in [16, 3000, 70_000] { _ = try exchange(size: size + round) }
        }
        XCTAssertGreaterThan(a.counter(.resentFrames), 0, "frames were lost and resent")
        XCTAssertGreaterThan(b.counter(.drops), 0, "frames after a lost one are dropped and come again")
    }

    /// An eager send is done once queued, its frames sent straight from the buffer: the buffer
    /// may be overwritten at once, and what is resent (one frame in three is lost) is still
    /// the message as it was sent.
    func testAnEagerSendBufferIsFreeOnceTheSendIsDoneThoughItsFramesAreResent() throws {
        tearDown()
        try open(mtu: 1500, environment: [MXWire.dropEnvironment: "3"])
        for round in 0..<20 {
            // The longest eager message (180 frames here, each lost one costing a window's
            // resend) in the first rounds only.
            for size in [100, 1400, 5000, 20_000, 65_536] + (round < 3 ? [MXLimits.rendezvousThresholdRemote] : []) {
                let seed = size + round
                let pattern = { (i: Int) in UInt8(truncatingIfNeeded: i &* 7 &+ seed) }
                // Two arrays, not one copied: the buffer's own storage is what gets overwritten.
                var buffer = (0..<size).map(pattern)
                let expected = (0..<size).map(pattern)
                let send = try buffer.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: UInt64(seed)) }
                XCTAssertTrue(try a.isComplete(send), "an eager send completes once queued")
                _ = try a.wait(send)
                for i in buffer.indices { buffer[i] = 0xEE }
                var inbox = [UInt8](repeating: 0, count: size)
                let r = try inbox.withUnsafeMutableBytes { try b.irecv($0, matchInfo: UInt64(seed)) }
                _ = try finish([(b, r)])
                let wrong = inbox.indices.first { inbox[$0] != expected[$0] }
                XCTAssertNil(wrong, "\(size) B, round \(round): the message as it was sent, not what the buffer held later")
            }
        }
        XCTAssertGreaterThan(a.counter(.resentFrames), 0)
    }

    /// Frames lost, duplicated and reordered at MTU 1500, with offload on and off: 400 messages
    /// of every size class, all sent before any is received, each delivered exactly once, in
    /// order, byte for byte.
    func testLostDuplicatedAndReorderedFramesAtMTU1500() throws {
        for offload in [true, false] {
            tearDown()
            var knobs = [MXWire.dropEnvironment: "25", MXWire.duplicateEnvironment: "10", MXWire.reorderEnvironment: "4"]
            if !offload { knobs[MXWire.offloadEnvironment] = "0" }
            try open(mtu: 1500, environment: knobs)
            // Eager of one frame and of many, and rendezvous.
            let sizes = (0..<400).map { i in [0, 8, 200, 1500, 5000, 20_000, 200_000, MXLimits.rendezvousThresholdRemote + 1][i % 8] + i % 7 }
            var buffers = sizes.enumerated().map { (i, n) in (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
            var sends: [(MXEndpoint, MXRequest)] = []
            for i in 0..<sizes.count {
                try buffers[i].withUnsafeBytes { sends.append((a, try a.isend($0, to: toB, matchInfo: 42))) }
                if i % 8 == 0 { try b.progress(); try a.progress() }
            }
            var inbox = [UInt8](repeating: 0, count: MXLimits.rendezvousThresholdRemote + 8)
            for i in 0..<sizes.count {
                let r = try inbox.withUnsafeMutableBytes { try b.irecv($0, matchInfo: 42) }
                let st = try finish([(b, r)])[0]
                XCTAssertEqual(st.messageLength, sizes[i], "offload \(offload): message \(i) in order")
                XCTAssertTrue(inbox[0..<sizes[i]].elementsEqual(buffers[i]), "offload \(offload): message \(i) intact")
            }
            _ = try finish(sends)
            // Exactly once: nothing more arrives.
            for _ in 0..<2000 { try a.progress(); try b.progress() }
            XCTAssertNil(try b.iprobe(matchInfo: 42), "offload \(offload): no message twice")
            XCTAssertGreaterThan(a.counter(.resentFrames), 0, "offload \(offload): lost frames were resent")
            XCTAssertGreaterThan(b.counter(.rendezvousPulls), 0, "offload \(offload): the longest went by rendezvous")
            XCTAssertGreaterThan(b.counter(.drops), 0, "offload \(offload): duplicates and early frames were dropped")
            XCTAssertLessThanOrEqual(b.core.pointee.wire.largestFrame, MXWire.frameLimit(mtu: 1500))
            buffers.removeAll()
        }
    }

    func testConnectFailuresAreClear() throws {
        XCTAssertThrowsError(try a.connect(nicID: b.nicID, endpointID: b.endpointID, key: 0xBAD)) {
            XCTAssertEqual(($0 as? MXError)?.code, .badConnectionKey, "\($0)")
        }
        XCTAssertThrowsError(try a.connect(nicID: b.nicID, endpointID: 5, key: 0xB)) {
            XCTAssertEqual(($0 as? MXError)?.code, .invalidEndpoint, "\($0)")
        }
        // A NIC id outside this wire's subnet: refused at once, nothing is sent there.
        XCTAssertThrowsError(try a.connect(nicID: NICAddressing.nicID(ipv4: cmx_parse_ipv4("10.99.0.1"), board: 0), endpointID: 0, key: 0)) {
            XCTAssertEqual(($0 as? MXError)?.code, .unknownNICID, "\($0)")
        }
        // An address on the wire where no backend answers: the connect times out.
        let silent = NICAddressing.nicID(ipv4: cmx_parse_ipv4("\(subnet).3"), board: 0)
        XCTAssertThrowsError(try a.connect(nicID: silent, endpointID: 0, key: 0, timeout: .milliseconds(600))) {
            XCTAssertEqual(($0 as? MXError)?.code, .timeout, "\($0)")
        }
        // And the pair still works.
        _ = try exchange(size: 64)
    }

    func testAClosedPeerIsHeardOnTheOtherHost() throws {
        // A rendezvous send nobody receives: it waits for a pull that never comes.
        let big = [UInt8](repeating: 1, count: MXLimits.rendezvousThresholdRemote + 1)
        let send = try big.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: 9) }
        for _ in 0..<100 { try a.progress(); try b.progress() }
        b.close()
        XCTAssertThrowsError(try a.wait(send, timeout: .seconds(10))) {
            XCTAssertEqual(($0 as? MXError)?.code, .peerClosed, "\($0)")
        }
        XCTAssertThrowsError(try big.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: 9) }) {
            XCTAssertEqual(($0 as? MXError)?.code, .peerClosed, "\($0)")
        }
    }

    func testStrangeDatagramsAreDroppedNotObeyed() throws {
        _ = try exchange(size: 10)
        let port = UInt16(cmx_udp_port(b.core.pointee.wire.fd))
        let ipB = cmx_parse_ipv4("\(subnet).2")
        let stranger = cmx_udp_socket(cmx_parse_ipv4("\(subnet).1"), 0, 65536)
        XCTAssertGreaterThanOrEqual(stranger, 0)
        defer { close(stranger) }
        var junk = [UInt8](repeating: 0xEE, count: 100)
        _ = cmx_udp_send(stranger, ipB, port, &junk, junk.count, nil, 0)
        // A well-formed frame from an address that is not a peer.
        var frame = [UInt8](repeating: 0, count: FrameLayout.headerSize + RecordLayout.headerSize)
        frame.withUnsafeMutableBytes { Shm.store($0.baseAddress!, FrameLayout.magicOffset, FrameLayout.magic) }
        _ = cmx_udp_send(stranger, ipB, port, &frame, frame.count, nil, 0)
        let before = b.counter(.drops)
        for _ in 0..<100 { try b.progress() }
        XCTAssertEqual(b.counter(.drops), before + 2)
        XCTAssertEqual(b.unexpectedCount, 0)
        _ = try exchange(size: 50_000)
    }
}
