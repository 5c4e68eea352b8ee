import XCTest
@testable import MyriXen
import MyriXenTestSupport

/// Two endpoints of one process over a real backend: the whole protocol, minus process death.
final class EndpointTests: XCTestCase {
    var backend: TestBackend!
    var mx: MXContext!
    var a: MXEndpoint!
    var b: MXEndpoint!
    var toB: MXEndpointAddress!
    var toA: MXEndpointAddress!

    override func setUpWithError() throws {
        backend = try TestBackend(boards: 2, endpoints: 8)
        mx = try backend.context()
        a = try mx.openEndpoint(key: 0xA)
        b = try mx.openEndpoint(key: 0xB)
        toB = try a.connect(nicID: b.nicID, endpointID: b.endpointID, key: 0xB)
        toA = try b.connect(nicID: a.nicID, endpointID: a.endpointID, key: 0xA)
    }

    override func tearDown() {
        a?.close()
        b?.close()
        mx?.finalize()
        backend?.stop()
    }

    func exchange(size: Int, threshold: Int = MXLimits.rendezvousThresholdLocal, sync: Bool = false) throws {
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        Pattern.fill(src, seed: size)
        dst.initializeMemory(as: UInt8.self, repeating: 0)
        let s = UnsafeRawBufferPointer(rebasing: src[0..<size])
        let send = sync ? try a.issend(s, to: toB, matchInfo: UInt64(size)) : try a.isend(s, to: toB, matchInfo: UInt64(size))
        let recv = try b.irecv(UnsafeMutableRawBufferPointer(rebasing: dst[0..<size]), matchInfo: UInt64(size))
        let rs = try b.wait(recv, timeout: .seconds(10))
        let ss = try a.wait(send, timeout: .seconds(10))
        XCTAssertEqual(rs.messageLength, size)
        XCTAssertEqual(rs.transferredLength, size)
        XCTAssertEqual(rs.matchInfo, UInt64(size))
        XCTAssertEqual(rs.source, toA, "the status names the sender")
        XCTAssertEqual(ss.transferredLength, size)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: dst[0..<size]), seed: size), "size \(size)")
    }

    /// Endpoints that name one key share one segment (what the MPI library's intra-host
    /// collectives are built in); another key is other memory; the segment lives until its
    /// last sharer closes; sizes and counts are bounded.
    /// How local rendezvous move: a word users type (MYRIXEN_LOCAL_PATH) or set, parsed and
    /// checked at open; a wrong one names the variable and the valid values.
    func testTheLocalPathIsParsedAndAWrongOneFailsTheOpen() throws {
        for (text, path) in [("measured", MXLocalPath.measured), ("pull", .pull), ("split", .split),
                             ("pieces", .pieces(upTo: Int.max)), ("pieces:65536", .pieces(upTo: 65536))] {
            XCTAssertEqual(MXLocalPath(parsing: text), path)
            XCTAssertEqual(path.description, text)
        }
        for bad in ["", "fast", "pieces:", "pieces:-1", "pieces:1k", "PULL"] { XCTAssertNil(MXLocalPath(parsing: bad), bad) }
        setenv(MXDefaults.localPathEnvironment, "fast", 1)
        defer { unsetenv(MXDefaults.localPathEnvironment) }
        XCTAssertThrowsError(try mx.openEndpoint(key: 0xD)) {
            XCTAssertEqual(($0 as? MXError)?.code, .badParameter, "\($0)")
            XCTAssertTrue("\($0)".contains("MYRIXEN_LOCAL_PATH must be measured, pull, split, pieces or pieces:BYTES, not 'fast'"), "\($0)")
        }
        unsetenv(MXDefaults.localPathEnvironment)
        var o = MXEndpointOptions()
        o.localPath = .pieces(upTo: -1)
        XCTAssertThrowsError(try mx.openEndpoint(key: 0xD, options: o)) { XCTAssertEqual(($0 as? MXError)?.code, .badParameter, "\($0)") }
        o.localPath = .split
        try mx.openEndpoint(key: 0xD, options: o).close()
    }

    func testSharedSegmentsByKey() throws {
        let key: UInt64 = 0x5EED_0001
        let pa = try a.shareSegment(key: key, size: 8192)
        let pb = try b.shareSegment(key: key, size: 8192)
        XCTAssertNotEqual(pa, pb, "each endpoint has its own mapping")
        XCTAssertEqual(pb.load(fromByteOffset: 4096, as: UInt64.self), 0, "a new segment is zeroed")
        pa.storeBytes(of: 0xDEAD_BEEF, toByteOffset: 4096, as: UInt64.self)
        XCTAssertEqual(pb.load(fromByteOffset: 4096, as: UInt64.self), 0xDEAD_BEEF, "one memory behind both")
        let other = try b.shareSegment(key: key + 1, size: 8192)
        XCTAssertEqual(other.load(fromByteOffset: 4096, as: UInt64.self), 0, "another key, another segment")
        XCTAssertThrowsError(try b.shareSegment(key: key, size: 4096)) {
            XCTAssertEqual(($0 as? MXError)?.code, .badParameter, "\($0)")
        }
        XCTAssertThrowsError(try a.shareSegment(key: key + 2, size: MXLimits.maxSharedSegmentBytes + 1)) {
            XCTAssertEqual(($0 as? MXError)?.code, .badParameter, "\($0)")
        }
        // b already shares two; the bound counts segments, not asks for the same one.
        for k in 2..<UInt64(MXLimits.sharedSegmentsPerEndpoint) { _ = try b.shareSegment(key: key + k, size: 4096) }
        _ = try b.shareSegment(key: key, size: 8192)
        XCTAssertThrowsError(try b.shareSegment(key: key + 99, size: 4096)) {
            XCTAssertEqual(($0 as? MXError)?.code, .accessDenied, "\($0)")
        }
        // The segment outlives a's close (b still shares it) and goes with b's.
        a.close()
        XCTAssertEqual(pb.load(fromByteOffset: 4096, as: UInt64.self), 0xDEAD_BEEF)
        b.close()
        let c = try mx.openEndpoint(key: 0xC)
        defer { c.close() }
        let pc = try c.shareSegment(key: key, size: 8192)
        XCTAssertEqual(pc.load(fromByteOffset: 4096, as: UInt64.self), 0, "the segment went with its last sharer")
    }

    func testLeavingASegmentGivesItBack() throws {
        let key: UInt64 = 0x5EED_1000
        let pa = try a.shareSegment(key: key, size: 8192)
        let pb = try b.shareSegment(key: key, size: 8192)
        XCTAssertEqual(try a.shareSegment(key: key, size: 8192), pa, "asking again gives the same mapping")
        pa.storeBytes(of: 0xFEED, toByteOffset: 64, as: UInt64.self)
        try a.leaveSegment(key: key)
        XCTAssertEqual(pb.load(fromByteOffset: 64, as: UInt64.self), 0xFEED, "b still shares it")
        XCTAssertThrowsError(try a.leaveSegment(key: key)) { XCTAssertEqual(($0 as? MXError)?.code, .badParameter, "\($0)") }
        let again = try a.shareSegment(key: key, size: 8192)
        XCTAssertEqual(again.load(fromByteOffset: 64, as: UInt64.self), 0xFEED, "rejoined while b stayed: the same memory")
        try a.leaveSegment(key: key)
        try b.leaveSegment(key: key)
        let fresh = try a.shareSegment(key: key, size: 8192)
        XCTAssertEqual(fresh.load(fromByteOffset: 64, as: UInt64.self), 0, "the segment went with its last sharer")
        try a.leaveSegment(key: key)
        // Leaving frees a place under the bound: an endpoint that made and left many keeps sharing.
        for k in 0..<UInt64(3 * MXLimits.sharedSegmentsPerEndpoint) {
            let p = try b.shareSegment(key: key + 1 + k, size: 4096)
            p.storeBytes(of: k, as: UInt64.self)
            try b.leaveSegment(key: key + 1 + k)
        }
        for k in 0..<UInt64(MXLimits.sharedSegmentsPerEndpoint) { _ = try b.shareSegment(key: key + 100 + k, size: 4096) }
        XCTAssertThrowsError(try b.shareSegment(key: key + 99, size: 4096)) { XCTAssertEqual(($0 as? MXError)?.code, .accessDenied, "\($0)") }
    }

    func testEverySizeClassArrivesIntact() throws {
        for size in [0, 1, 8, 32, 33, 128, 129, 1000, 4096, 4097, 65536, 1 << 20, 4 << 20] {
            try exchange(size: size)
        }
        XCTAssertGreaterThan(b.counter(.rendezvousPulls), 0, "large messages were pulled")
        XCTAssertEqual(b.counter(.messagesReceived), 13)
    }

    func testSynchronousSendsOfEverySize() throws {
        for size in [0, 8, 100, 4000, 100_000] { try exchange(size: size, sync: true) }
    }

    func testIssendCompletesOnlyOnceMatched() throws {
        var v: UInt64 = 42
        let s = try withUnsafeBytes(of: &v) { try a.issend($0, to: toB, matchInfo: 1) }
        for _ in 0..<50 { try b.progress(); XCTAssertNil(try a.test(s), "nobody received yet") }
        XCTAssertEqual(b.unexpectedCount, 1)
        var out: UInt64 = 0
        let st = try withUnsafeMutableBytes(of: &out) { try b.wait(try b.irecv($0, matchInfo: 1)) }
        XCTAssertEqual(st.messageLength, 8)
        XCTAssertEqual(out, 42)
        XCTAssertEqual(try a.wait(s, timeout: .seconds(5)).transferredLength, 8)
    }

    func testTruncationIsReportedNeverOverrun() throws {
        for size in [100, 10_000] {
            let src = [UInt8](repeating: 0x5A, count: size)
            var dst = [UInt8](repeating: 0, count: 64)
            let s = try src.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: 9) }
            let st = try dst.withUnsafeMutableBytes { buf in
                try b.wait(try b.irecv(UnsafeMutableRawBufferPointer(rebasing: buf[0..<50]), matchInfo: 9), timeout: .seconds(10))
            }
            let ss = try a.wait(s, timeout: .seconds(10))
            if size > a.rendezvousThreshold {
                XCTAssertEqual(ss.transferredLength, 50, "the receiver's notify says how much it took")
            }
            XCTAssertTrue(st.isTruncated)
            XCTAssertEqual(st.messageLength, size)
            XCTAssertEqual(st.transferredLength, 50)
            XCTAssertEqual(Array(dst[0..<50]), [UInt8](repeating: 0x5A, count: 50))
            XCTAssertEqual(Array(dst[50...]), [UInt8](repeating: 0, count: 14), "nothing past the buffer")
        }
    }

    func testMessagesOfOnePairMatchInSendOrder() throws {
        let n = 2000
        var values = (0..<n).map { UInt64($0) }
        let big = [UInt8](repeating: 1, count: 20_000)
        var sends: [MXRequest] = []
        try values.withUnsafeMutableBufferPointer { vb in
            for i in 0..<n {
                if i % 100 == 50 {
                    sends.append(try big.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: 7) })
                } else {
                    sends.append(try a.isend(UnsafeRawBufferPointer(start: vb.baseAddress! + i, count: 8), to: toB, matchInfo: 7))
                }
            }
            var got: [Int] = []
            var buf = [UInt8](repeating: 0, count: 20_000)
            for _ in 0..<n {
                // One thread plays both processes: the sender's queued sends need its progress too.
                let st = try buf.withUnsafeMutableBytes { rb in
                    let r = try b.irecv(rb, matchInfo: 0, mask: 0)
                    while true {
                        if let st = try b.test(r) { return st }
                        try a.progress()
                    }
                }
                got.append(st.messageLength == 8 ? Int(buf.withUnsafeBytes { $0.load(as: UInt64.self) }) : -1)
            }
            XCTAssertEqual(got, (0..<n).map { $0 % 100 == 50 ? -1 : $0 })
            for s in sends { _ = try a.wait(s, timeout: .seconds(10)) }
        }
    }

    func testTenThousandUnexpectedMessages() throws {
        let n = 10_000
        var sends: [MXRequest] = []
        var payload = [UInt32](repeating: 0, count: n)
        for i in 0..<n { payload[i] = UInt32(i) }
        try payload.withUnsafeBufferPointer { pb in
            for i in 0..<n {
                sends.append(try a.isend(UnsafeRawBufferPointer(start: pb.baseAddress! + i, count: 4), to: toB, matchInfo: UInt64(i % 3)))
                if i % 64 == 0 { for _ in 0..<4 { try b.progress() } } // drains rings into the unexpected queue
            }
            // One thread plays both: the receiver's progress makes room for the sender's queue.
            for s in sends { while try a.test(s) == nil { try b.progress() } }
        }
        for _ in 0..<10 { try b.progress() }
        XCTAssertEqual(b.unexpectedCount, n)
        // Receive by class; each class in order.
        for cls in 0..<3 {
            var expect = cls
            while expect < n {
                var v: UInt32 = 0
                _ = try withUnsafeMutableBytes(of: &v) { try b.wait(try b.irecv($0, matchInfo: UInt64(cls)), timeout: .seconds(5)) }
                XCTAssertEqual(Int(v), expect)
                expect += 3
            }
        }
        XCTAssertEqual(b.unexpectedCount, 0)
    }

    func testProbeSeesUnexpectedMessagesOnly() throws {
        XCTAssertNil(try b.iprobe(matchInfo: 5))
        let data = [UInt8](repeating: 3, count: 300)
        let s = try data.withUnsafeBytes { try a.isend($0, to: toB, matchInfo: 5) }
        let st = try b.probe(matchInfo: 5, timeout: .seconds(5))
        XCTAssertEqual(st.messageLength, 300)
        XCTAssertEqual(st.source, toA)
        XCTAssertNotNil(try b.iprobe(matchInfo: 0, mask: 0), "probing does not consume")
        var out = [UInt8](repeating: 0, count: st.messageLength)
        _ = try out.withUnsafeMutableBytes { try b.wait(try b.irecv($0, matchInfo: 5)) }
        XCTAssertEqual(out, data)
        XCTAssertNil(try b.iprobe(matchInfo: 5))
        _ = try a.wait(s)
        XCTAssertThrowsError(try b.probe(matchInfo: 6, timeout: .milliseconds(50))) { XCTAssertEqual(($0 as? MXError)?.code, .timeout) }
    }

    func testCancelOnlyUnmatchedReceives() throws {
        var v: UInt64 = 0
        try withUnsafeMutableBytes(of: &v) { buf in
            let r = try b.irecv(buf, matchInfo: 77)
            XCTAssertTrue(try b.cancel(r))
            let st = try b.wait(r)
            XCTAssertTrue(st.isCancelled)
            // Sends are never cancelled.
            let s = try a.isend(UnsafeRawBufferPointer(buf), to: toB, matchInfo: 78)
            XCTAssertFalse(try a.cancel(s))
            // A matched receive cannot be cancelled either.
            let r2 = try b.irecv(buf, matchInfo: 78)
            _ = try b.wait(r2)
            XCTAssertThrowsError(try b.cancel(r2)) { XCTAssertEqual(($0 as? MXError)?.code, .requestCompleted) }
            _ = try a.wait(s)
        }
    }

    func testScatterGatherSegments() throws {
        for total in [60, 3000, 50_000] {
            let src = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 8)
            let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 8)
            defer { src.deallocate(); dst.deallocate() }
            Pattern.fill(src, seed: total)
            let cuts = [0, total / 7, total / 3, total / 2, total]
            let sendSegs = (0..<4).map { MXSegment(src.baseAddress! + cuts[$0], length: cuts[$0 + 1] - cuts[$0]) }
            let recvSegs = [MXSegment(dst.baseAddress!, length: total / 5), MXSegment(dst.baseAddress! + total / 5, length: total - total / 5)]
            let s = try sendSegs.withUnsafeBufferPointer { try a.isend(segments: $0, to: toB, matchInfo: 3) }
            let r = try recvSegs.withUnsafeBufferPointer { try b.irecv(segments: $0, matchInfo: 3) }
            XCTAssertEqual(try b.wait(r, timeout: .seconds(5)).transferredLength, total)
            _ = try a.wait(s, timeout: .seconds(5))
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(dst), seed: total))
        }
        let many = [MXSegment](repeating: MXSegment(nil, length: 0), count: 257)
        XCTAssertThrowsError(try many.withUnsafeBufferPointer { try a.isend(segments: $0, to: toB, matchInfo: 1) }) {
            XCTAssertEqual(($0 as? MXError)?.code, .tooManySegments)
        }
    }

    func testWaitAnyTestAnyAndPeek() throws {
        var x: UInt64 = 0, y: UInt64 = 0
        try withUnsafeMutableBytes(of: &x) { bx in
            try withUnsafeMutableBytes(of: &y) { by in
                let rx = try b.irecv(bx, matchInfo: 1)
                let ry = try b.irecv(by, matchInfo: 2)
                XCTAssertNil(try b.testAny([rx, ry]))
                XCTAssertNil(try b.ipeek())
                var v: UInt64 = 99
                let s = try withUnsafeBytes(of: &v) { try a.isend($0, to: toB, matchInfo: 2) }
                let peeked = try b.peek(timeout: .seconds(5))
                XCTAssertEqual(peeked, ry, "peek names the completed request without completing it")
                let (i, st) = try b.waitAny([rx, ry], timeout: .seconds(5))
                XCTAssertEqual(i, 1)
                XCTAssertEqual(st.matchInfo, 2)
                XCTAssertThrowsError(try b.waitAny([rx], timeout: .milliseconds(30))) { XCTAssertEqual(($0 as? MXError)?.code, .timeout) }
                XCTAssertTrue(try b.cancel(rx))
                _ = try b.wait(rx)
                _ = try a.wait(s)
            }
        }
        XCTAssertEqual(y, 99)
    }

    func testMisuseGivesTypedErrors() throws {
        var v: UInt64 = 0
        try withUnsafeMutableBytes(of: &v) { buf in
            XCTAssertThrowsError(try b.irecv(buf, matchInfo: 0x100, mask: 0xFF)) { XCTAssertEqual(($0 as? MXError)?.code, .badMatchMask) }
            let r = try b.irecv(buf, matchInfo: 1)
            XCTAssertThrowsError(try b.wait(r, timeout: .milliseconds(20))) { XCTAssertEqual(($0 as? MXError)?.code, .timeout) }
            XCTAssertTrue(try b.cancel(r))
            _ = try b.wait(r)
            XCTAssertThrowsError(try b.wait(r)) { XCTAssertEqual(($0 as? MXError)?.code, .requestCompleted) }
            XCTAssertThrowsError(try b.test(r)) { XCTAssertEqual(($0 as? MXError)?.code, .requestCompleted) }
            XCTAssertThrowsError(try b.wait(MXRequest(index: 1 << 30, generation: 0))) { XCTAssertEqual(($0 as? MXError)?.code, .invalidRequest) }
        }
        XCTAssertThrowsError(try a.connect(nicID: b.nicID, endpointID: b.endpointID, key: 0xBAD)) {
            XCTAssertEqual(($0 as? MXError)?.code, .badConnectionKey)
        }
        XCTAssertThrowsError(try a.connect(nicID: 0x02_0000_0000_99, endpointID: 0, key: 0)) { XCTAssertEqual(($0 as? MXError)?.code, .unknownNICID) }
        XCTAssertThrowsError(try a.connect(nicID: b.nicID, endpointID: 7, key: 0)) { XCTAssertEqual(($0 as? MXError)?.code, .invalidEndpoint) }
        XCTAssertThrowsError(try mx.openEndpoint(board: 5)) { XCTAssertEqual(($0 as? MXError)?.code, .invalidBoard) }
        XCTAssertThrowsError(try mx.openEndpoint(endpoint: 8)) { XCTAssertEqual(($0 as? MXError)?.code, .invalidEndpoint) }
        XCTAssertThrowsError(try mx.openEndpoint(board: a.board, endpoint: a.endpointID)) { XCTAssertEqual(($0 as? MXError)?.code, .invalidEndpoint) }
        // A closed endpoint refuses everything, even its old requests, without crashing.
        let c = try mx.openEndpoint(key: 1)
        let old = try withUnsafeMutableBytes(of: &v) { try c.irecv($0, matchInfo: 0) }
        c.close()
        c.close()
        try withUnsafeMutableBytes(of: &v) { buf in
            XCTAssertThrowsError(try c.irecv(buf, matchInfo: 0)) { XCTAssertEqual(($0 as? MXError)?.code, .closedEndpoint) }
        }
        for call in [{ _ = try c.wait(old) }, { _ = try c.test(old) }, { _ = try c.cancel(old) }, { _ = try c.waitAny([old]) },
                     { _ = try c.testAny([old]) }, { _ = try c.ipeek() }, { _ = try c.iprobe(matchInfo: 0) }] as [() throws -> Void] {
            XCTAssertThrowsError(try call()) { XCTAssertEqual(($0 as? MXError)?.code, .closedEndpoint) }
        }
        // Its peers learn it is gone.
        XCTAssertThrowsError(try a.connect(nicID: c.nicID, endpointID: c.endpointID, key: 1)) { XCTAssertEqual(($0 as? MXError)?.code, .invalidEndpoint) }
    }

    func testBoardsAddressesAndAnySelection() throws {
        XCTAssertEqual(mx.boards.count, 2)
        XCTAssertEqual(mx.boards[0].endpointLimit, 8)
        XCTAssertEqual(mx.boards[0].lineSpeedGbps, 10)
        let nic1 = try mx.boardNumberToNICID(1)
        XCTAssertEqual(try mx.nicIDToHostname(nic1), "\(mx.hostname):1")
        XCTAssertEqual(try mx.hostnameToNICID("\(mx.hostname):1"), nic1)
        XCTAssertEqual(try mx.hostnameToNICID(mx.hostname), try mx.boardNumberToNICID(0))
        XCTAssertThrowsError(try mx.hostnameToNICID("no-such-host:0")) { XCTAssertEqual(($0 as? MXError)?.code, .unknownHost) }
        XCTAssertThrowsError(try mx.nicIDToHostname(12345)) { XCTAssertEqual(($0 as? MXError)?.code, .unknownNICID) }
        // Fill board 0; "any" then spills onto board 1.
        var eps: [MXEndpoint] = []
        for _ in 0..<14 { eps.append(try mx.openEndpoint()) }
        XCTAssertEqual(eps.filter { $0.board == 1 }.count, 8)
        XCTAssertThrowsError(try mx.openEndpoint()) { XCTAssertEqual(($0 as? MXError)?.code, .noFreeEndpoint) }
        try mx.refreshBoards()
        XCTAssertEqual(mx.boards.map(\.endpointsInUse), [8, 8])
        eps.forEach { $0.close() }
    }

    func testSelfSendsOfEverySize() throws {
        let me = try a.connect(nicID: a.nicID, endpointID: a.endpointID, key: 0xA)
        for size in [4, 5000, 300_000] {
            var src = [UInt8](repeating: 0, count: size)
            src.withUnsafeMutableBytes { Pattern.fill($0, seed: 3) }
            var dst = [UInt8](repeating: 0, count: size)
            let s = try src.withUnsafeBytes { try a.isend($0, to: me, matchInfo: 11) }
            _ = try dst.withUnsafeMutableBytes { try a.wait(try a.irecv($0, matchInfo: 11), timeout: .seconds(5)) }
            _ = try a.wait(s, timeout: .seconds(5))
            XCTAssertEqual(src, dst)
        }
    }

    func testRegistrationCacheReusesRegions() throws {
        let buf = [UInt8](repeating: 9, count: 100_000)
        var out = [UInt8](repeating: 0, count: 100_000)
        try buf.withUnsafeBytes { sb in
            for _ in 0..<5 {
                let s = try a.isend(sb, to: toB, matchInfo: 1)
                _ = try out.withUnsafeMutableBytes { try b.wait(try b.irecv($0, matchInfo: 1), timeout: .seconds(5)) }
                _ = try a.wait(s, timeout: .seconds(5))
            }
            let stats = a.registrationCacheStatistics
            XCTAssertEqual(stats.misses, 1, "registered once")
            XCTAssertEqual(stats.hits, 4)
            XCTAssertEqual(try mx.info().endpoints.first { $0.endpoint == a.endpointID && $0.board == a.board }?.regions.count, 1)
            try a.invalidateRegistrations(covering: sb)
            XCTAssertEqual(a.registrationCacheStatistics.regions, 0)
            XCTAssertEqual(try mx.info().endpoints.first { $0.endpoint == a.endpointID && $0.board == a.board }?.regions.count, 0)
        }
    }

    func testAPullOutsideTheRegionIsRefusedAndCounted() throws {
        let big = [UInt8](repeating: 1, count: 50_000)
        var out = [UInt8](repeating: 0, count: 50_000)
        try big.withUnsafeBytes { sb in
            let s = try a.isend(sb, to: toB, matchInfo: 4)
            for _ in 0..<10 { try b.progress() }
            XCTAssertEqual(b.unexpectedCount, 1, "the rendezvous waits, without data")
            // The region goes away behind the send's back (as if the memory were freed).
            let id = a.core.pointee.cache.entries[0].regionID
            _ = try a.connection.call(.deregister) { $0.put(id) }
            let r = try out.withUnsafeMutableBytes { try b.irecv($0, matchInfo: 4) }
            XCTAssertThrowsError(try b.wait(r, timeout: .seconds(5))) { XCTAssertEqual(($0 as? MXError)?.code, .pullRefused) }
            XCTAssertThrowsError(try a.wait(s, timeout: .seconds(5))) { XCTAssertEqual(($0 as? MXError)?.code, .pullRefused) }
        }
        XCTAssertEqual(b.counter(.refusedPulls), 1)
        XCTAssertEqual(out, [UInt8](repeating: 0, count: 50_000), "nothing was copied")
        let info = try mx.info()
        XCTAssertEqual(info.endpoints.first { $0.endpoint == b.endpointID && $0.board == b.board }?.counter(.refusedPulls), 1)
        XCTAssertTrue(MXInfoReport.render(info).contains("refused"))
    }

    func testRegionTableFullWhenEveryRegionIsInUse() throws {
        // 256 large sends in flight, from 256 distinct buffers, pin every region.
        let size = MXLimits.rendezvousThresholdLocal + 1000
        let n = MXLimits.regionsPerEndpoint
        let pool = UnsafeMutableRawBufferPointer.allocate(byteCount: size * (n + 1), alignment: 4096)
        defer { pool.deallocate() }
        var sends: [MXRequest] = []
        for k in 0..<n {
            sends.append(try a.isend(UnsafeRawBufferPointer(rebasing: pool[(k * size)..<((k + 1) * size)]), to: toB, matchInfo: 1))
        }
        XCTAssertThrowsError(try a.isend(UnsafeRawBufferPointer(rebasing: pool[(n * size)...]), to: toB, matchInfo: 1)) {
            XCTAssertEqual(($0 as? MXError)?.code, .regionTableFull)
        }
        // Once they complete, their regions can be evicted and the next send goes through.
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { out.deallocate() }
        for s in sends {
            let r = try b.irecv(out, matchInfo: 1)
            while try b.test(r) == nil { try a.progress() }
            _ = try a.wait(s)
        }
        let last = try a.isend(UnsafeRawBufferPointer(rebasing: pool[(n * size)...]), to: toB, matchInfo: 1)
        _ = try b.wait(try b.irecv(out, matchInfo: 1), timeout: .seconds(5))
        _ = try a.wait(last, timeout: .seconds(5))
        XCTAssertEqual(a.registrationCacheStatistics.regions, n)
    }

    func testForeignAndRevokedGrantsDoNotMap() throws {
        // b's frontend asks for a's pages: they are granted to a's frontend only.
        XCTAssertThrowsError(try b.connection.mapGrants([a.pageGrants.protected])) {
            XCTAssertEqual(($0 as? MXError)?.code, .accessDenied)
        }
        XCTAssertThrowsError(try b.connection.mapGrants([GrantRef(999_999)])) { XCTAssertEqual(($0 as? MXError)?.code, .accessDenied) }
        // a's own frontend maps them, until a closes; then they are revoked.
        let c = try mx.openEndpoint(key: 7)
        let maps = try c.connection.mapGrants([c.pageGrants.unprotected])
        SharedMemory.unmap(maps[0].pointer, size: maps[0].size)
        let refs = c.pageGrants
        let conn = try BackendConnection(path: backend.socketPath)
        defer { conn.close() }
        c.close()
        XCTAssertThrowsError(try conn.mapGrants([refs.protected])) { XCTAssertEqual(($0 as? MXError)?.code, .revokedGrant) }
        XCTAssertEqual(try mx.info().refusedGrantMaps, 3, "foreign, unknown, revoked")
    }

    func testBusySendersAreServedInTurn() throws {
        // Two senders fill their rings before the receiver looks; one round of progress takes a
        // batch from each, so any-source receives see both senders early, not one sender's all.
        let c = try mx.openEndpoint(key: 0xC)
        defer { c.close() }
        let cToB = try c.connect(nicID: b.nicID, endpointID: b.endpointID, key: 0xB)
        try b.progress() // b attaches c (the backend told it) before anything is sent
        var one: UInt64 = 1
        var fromA: [MXRequest] = [], fromC: [MXRequest] = []
        for _ in 0..<200 {
            fromA.append(try withUnsafeBytes(of: &one) { try a.isend($0, to: toB, matchInfo: 1) })
            fromC.append(try withUnsafeBytes(of: &one) { try c.isend($0, to: cToB, matchInfo: 2) })
        }
        var sources: [UInt64] = []
        var out: UInt64 = 0
        for _ in 0..<400 {
            let st = try withUnsafeMutableBytes(of: &out) { try b.wait(try b.irecv($0, matchInfo: 0, mask: 0), timeout: .seconds(5)) }
            sources.append(st.matchInfo)
        }
        for s in fromA { _ = try a.wait(s) }
        for s in fromC { _ = try c.wait(s) }
        XCTAssertEqual(Set(sources.prefix(2 * EndpointCore.recordsPerPeerPerRound)), [1, 2], "both senders within the first two batches")
    }

    func testAPeerThatConnectedIsFoundWithoutConnecting() throws {
        let c = try mx.openEndpoint(key: 0xC)
        defer { c.close() }
        XCTAssertNil(a.attachedPeer(nicID: c.nicID, endpointID: c.endpointID, session: c.session), "nobody connected yet")
        let toA = try c.connect(nicID: a.nicID, endpointID: a.endpointID, key: 0xA)
        var found: MXEndpointAddress?
        for _ in 0..<1000 where found == nil {   // A learns of C at its next progress
            try a.progress()
            found = a.attachedPeer(nicID: c.nicID, endpointID: c.endpointID, session: c.session)
        }
        guard let toC = found else { return XCTFail("A never saw C attach") }
        XCTAssertNil(a.attachedPeer(nicID: c.nicID, endpointID: c.endpointID, session: c.session &+ 1),
                     "another session is another endpoint, whatever its number")
        var v: UInt64 = 42
        let got = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { got.deallocate() }
        let r = try c.irecv(got, matchInfo: 9)
        _ = try withUnsafeBytes(of: &v) { try a.wait(try a.isend($0, to: toC, matchInfo: 9)) }
        XCTAssertEqual(try c.wait(r, timeout: .seconds(10)).source, toA)
        XCTAssertEqual(got.load(as: UInt64.self), 42, "the found address sends like a connected one")
    }

    func testIconnectCompletesWithTheAddress() throws {
        let r = try a.iconnect(nicID: b.nicID, endpointID: b.endpointID, key: 0xB)
        let st = try a.wait(r, timeout: .seconds(5))
        XCTAssertEqual(st.source, toB, "connecting again yields the same address")
        let bad = try a.iconnect(nicID: b.nicID, endpointID: b.endpointID, key: 0)
        XCTAssertThrowsError(try a.wait(bad, timeout: .seconds(5))) { XCTAssertEqual(($0 as? MXError)?.code, .badConnectionKey) }
        XCTAssertEqual(try mx.info().refusedConnects, 1)
        // A cancelled connect completes as cancelled; connecting again works.
        let c = try mx.openEndpoint(key: 0xC)
        let pending = try a.iconnect(nicID: c.nicID, endpointID: c.endpointID, key: 0xC)
        XCTAssertTrue(try a.cancel(pending))
        XCTAssertTrue(try a.wait(pending).isCancelled)
        let toC = try a.connect(nicID: c.nicID, endpointID: c.endpointID, key: 0xC, timeout: .seconds(5))
        var v: UInt64 = 5
        let s = try withUnsafeBytes(of: &v) { try a.isend($0, to: toC, matchInfo: 1) }
        var out: UInt64 = 0
        _ = try withUnsafeMutableBytes(of: &out) { try c.wait(try c.irecv($0, matchInfo: 1), timeout: .seconds(5)) }
        _ = try a.wait(s)
        XCTAssertEqual(out, 5)
        c.close()
    }
}
