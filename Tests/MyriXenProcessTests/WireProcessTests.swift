import XCTest
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The multi-process tests across two hosts: this process's endpoint on one backend, the
/// peer processes' on another, the two backends on one wire (two loopback addresses). Each
/// process progresses on its own, as ranks on two VMs do.
final class WireProcessTests: PeerProcessTestCase {
    override func setUpWithError() throws {
        let subnet = "127.\(getpid() % 200 + 20).\(Int.random(in: 1...250))"
        backend = try TestBackend(wire: "\(subnet).1")
        peerBackend = try TestBackend(endpoints: 32, wire: "\(subnet).2")
        mx = try backend.context()
        ep = try mx.openEndpoint(key: key)
    }

    func testEverySizeRoundTripsBetweenHosts() throws {
        try checkEcho(sizes: [0, 1, 32, 33, 4096, 32768, 32769, 65536, 61441, 1 << 20, 4 << 20])
        XCTAssertGreaterThan(ep.counter(.rendezvousPulls), 0, "large echoes were pulled across hosts")
        XCTAssertGreaterThan(ep.counter(.framesReceived), 0, "over the wire")
    }

    func testEightSendersOnAnotherHostToOneReceiver() throws {
        try checkSenders(8, count: 200, sizes: [8, 100, 3000, 40000])
        XCTAssertGreaterThan(ep.counter(.framesReceived), 0, "over the wire")
    }

    func testMessagesSentJustBeforeCloseArriveEvenWhenFramesAreLost() throws {
        // The peer loses one frame in three it sends, sends eager messages (complete at once),
        // closes and exits: its close waits until they are acked.
        setenv(MXWire.dropEnvironment, "3", 1)
        let p = try spawnPeer("send-and-close", ["--count", "50", "--sizes", "8,1000,20000"])
        unsetenv(MXWire.dropEnvironment)
        _ = try hello()
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 20000, alignment: 64)
        defer { buf.deallocate() }
        for seq in 0..<50 {
            let st = try ep.wait(try ep.irecv(buf, matchInfo: UInt64(seq)), timeout: .seconds(30))
            XCTAssertEqual(st.messageLength, [8, 1000, 20000][seq % 3])
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: buf[0..<st.messageLength]), seed: seq), "message \(seq)")
        }
        // Acks go out while this side progresses (as in any MPI call); the peer's close ends as
        // soon as its last frame is acked, long before its 5 s limit.
        let start = monotonicNanoseconds()
        var outcome = p.poll()
        while outcome == nil && monotonicNanoseconds() - start < 10_000_000_000 {
            try ep.progress()
            outcome = p.poll()
        }
        XCTAssertEqual(outcome, .exited(0))
        XCTAssertLessThan(monotonicNanoseconds() - start, 2_000_000_000, "the close lingered only until acked")
    }

    func testAKilledPeerOnAnotherHostIsHeardOfWithinASecond() throws {
        let p = try spawnPeer("rendezvous-then-hang")
        let (peer, _) = try hello()
        XCTAssertEqual(try status(), 1)
        XCTAssertEqual(ep.unexpectedCount, 1, "its rendezvous waits here, without data")
        p.signal(SIGKILL)
        XCTAssertEqual(p.wait(), .signalled(SIGKILL))
        // Its backend tells ours; within a second, sends to it fail with a clear error.
        XCTAssertEqual(firstSendError(to: peer)?.code, .peerClosed)
        XCTAssertEqual(ep.unexpectedCount, 0, "its rendezvous can no longer be pulled and was dropped")
    }
}
