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
        backend = try TestBackend(wire: "\(subnet).1", hostTimeout: 1)
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

    func testAHostThatVanishesEndsItsPairsAfterTheHostTimeout() throws {
        // The peer leaves a rendezvous here; then its whole host goes: its backend is killed
        // first (nobody announces the peer's end), and the peer dies with it.
        let p = try spawnPeer("rendezvous-then-hang")
        _ = try hello()
        XCTAssertEqual(try status(), 1)
        peerBackend!.kill()
        p.signal(SIGKILL)
        _ = p.wait()
        // Our receive matches the rendezvous and asks for the data, which never comes; our
        // backend stops hearing the other host and ends the pair (host timeout 1 s here).
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { big.deallocate() }
        let start = monotonicNanoseconds()
        XCTAssertThrowsError(try ep.wait(try ep.irecv(big, matchInfo: 9), timeout: .seconds(20))) {
            XCTAssertEqual(($0 as? MXError)?.code, .peerClosed, "\($0)")
            XCTAssertTrue("\($0)".contains("stopped answering"), "\($0)")
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        XCTAssertLessThan(seconds, 5, "the host timeout (1 s) plus a heartbeat, not the resend cycle")
    }

    func testABusyPeerIsNotTakenForDead() throws {
        // The peer computes (does not call in) for longer than the host timeout while our
        // frames to it wait for acks: its backend keeps answering for its host, so the pair
        // stays, and the messages arrive when it calls in again.
        let p = try spawnPeer("echo", ["--sizes", "100000", "--pause-ms", "3000"])
        let (peer, _) = try hello()
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: 100_000, alignment: 64)
        let back = UnsafeMutableRawBufferPointer.allocate(byteCount: 100_000, alignment: 64)
        defer { out.deallocate(); back.deallocate() }
        Pattern.fill(out, seed: 100_000)
        let s = try ep.isend(UnsafeRawBufferPointer(out), to: peer, matchInfo: 100_000)
        let st = try ep.wait(try ep.irecv(back, matchInfo: PeerTag.echo | 100_000), timeout: .seconds(30))
        _ = try ep.wait(s, timeout: .seconds(30))
        XCTAssertEqual(st.messageLength, 100_000)
        XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(back), seed: 100_000))
        try done(peer)
        assertExit(p)
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
