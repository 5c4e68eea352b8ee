import XCTest
@testable import MyriXen
import Topology

final class HandshakeTests: XCTestCase {
    func testTheXenHandshakeInOrder() throws {
        var fe = XenbusHandshake(role: .frontend)
        var be = XenbusHandshake(role: .backend)
        try be.observe(peer: fe.local)
        try be.advance(to: .initWait)
        try fe.observe(peer: be.local)
        try fe.advance(to: .initialised)
        try be.observe(peer: fe.local)
        try be.advance(to: .connected)
        try fe.observe(peer: be.local)
        try fe.advance(to: .connected)
        try be.observe(peer: fe.local)
        XCTAssertTrue(fe.isConnected)
        XCTAssertTrue(be.isConnected)
        try fe.advance(to: .closing)
        try fe.advance(to: .closed)
        XCTAssertThrowsError(try fe.advance(to: .connected), "nothing after Closed")
    }

    func testStepsOutOfOrderAreRefused() throws {
        var fe = XenbusHandshake(role: .frontend)
        XCTAssertThrowsError(try fe.advance(to: .initialised), "the backend is not in InitWait yet") {
            XCTAssertEqual(($0 as? MXError)?.code, .protocolError)
        }
        XCTAssertThrowsError(try fe.advance(to: .connected))
        var be = XenbusHandshake(role: .backend)
        try be.advance(to: .initWait)
        XCTAssertThrowsError(try be.advance(to: .connected), "the frontend is not Initialised")
        var be2 = XenbusHandshake(role: .backend)
        try be2.observe(peer: .initialising)
        XCTAssertThrowsError(try be2.observe(peer: .connected), "Initialising -> Connected skips Initialised")
        XCTAssertEqual(XenbusState.initWait.rawValue, 2)
        XCTAssertEqual(XenbusState.closed.rawValue, 6)
    }
}

final class GrantTableTests: XCTestCase {
    func testMapChecksGranteeAndRevocation() throws {
        var table = GrantTable()
        let fd = try SharedMemory.create(name: "test-grant", size: 4096)
        let ref = table.grant(fd: fd, size: 4096, to: 7, writable: true, owners: [100])
        guard case .success(let g) = table.map(ref, by: 7) else { return XCTFail("grantee must map") }
        XCTAssertEqual(g.fd, fd)
        guard case .failure(let foreign) = table.map(ref, by: 8) else { return XCTFail("a foreign map must fail") }
        XCTAssertEqual(foreign.code, .accessDenied)
        guard case .failure(let unknown) = table.map(GrantRef(999), by: 7) else { return XCTFail() }
        XCTAssertEqual(unknown.code, .accessDenied)
        XCTAssertEqual(table.revoke(owner: 100), 1)
        guard case .failure(let revoked) = table.map(ref, by: 7) else { return XCTFail("a revoked map must fail") }
        XCTAssertEqual(revoked.code, .revokedGrant)
        XCTAssertEqual(table.refusedMaps, 3)
        XCTAssertEqual(table.activeCount, 0)
        // The last grant's revocation closed the object.
        XCTAssertEqual(fcntl(fd, F_GETFD), -1)
    }

    func testSharedObjectsCloseWithTheirLastGrant() throws {
        var table = GrantTable()
        let fd = try SharedMemory.create(name: "test-grant-2", size: 8192)
        let a = table.grant(fd: fd, size: 8192, to: 1, writable: true, owners: [1, 2])
        _ = table.grant(fd: fd, size: 8192, to: 2, writable: true, owners: [2])
        XCTAssertEqual(table.objectBytes(), 8192, "one object counted once")
        table.revoke(a)
        XCTAssertNotEqual(fcntl(fd, F_GETFD), -1, "still granted to domain 2")
        table.revoke(grantee: 2)
        XCTAssertEqual(fcntl(fd, F_GETFD), -1)
    }

    func testSealedPagesCannotBeMappedWritable() throws {
        let fd = try SharedMemory.create(name: "test-sealed", size: 4096)
        defer { close(fd) }
        let rw = try SharedMemory.map(fd, size: 4096, writable: true)
        try SharedMemory.sealAgainstWriters(fd)
        rw.storeBytes(of: 42, as: UInt32.self) // the owner's mapping stays writable
        XCTAssertThrowsError(try SharedMemory.map(fd, size: 4096, writable: true), "no new writable mapping")
        let ro = try SharedMemory.map(fd, size: 4096, writable: false)
        XCTAssertEqual(ro.load(as: UInt32.self), 42)
        SharedMemory.unmap(ro, size: 4096)
        SharedMemory.unmap(rw, size: 4096)
    }
}

final class CodecTests: XCTestCase {
    func testControlMessagesRoundTrip() throws {
        let g = PeerGrant(nicID: 0x02_1234_5678_00, endpoint: 3, session: 77, pid: 4242, ringOut: GrantRef(1),
                          ringIn: GrantRef(2), peerProtected: GrantRef(3), peerUnprotected: GrantRef(4), alreadyAttached: true)
        let bytes = ControlMessage.encode(.peerAttached, token: 9) { g.encode(to: &$0) }
        var m = try ControlMessage.decode(bytes, fds: [])
        XCTAssertEqual(m.header.type, .peerAttached)
        XCTAssertEqual(m.header.token, 9)
        XCTAssertEqual(try PeerGrant(from: &m.payload), g)
    }

    func testTruncatedAndUnknownMessagesAreErrors() {
        let bytes = ControlMessage.encode(.connect, token: 1) { $0.put(UInt64(5)) }
        XCTAssertThrowsError(try { var m = try ControlMessage.decode(Array(bytes.prefix(10)), fds: []); _ = try m.payload.get(UInt64.self) }()) {
            XCTAssertEqual(($0 as? MXError)?.code, .protocolError)
        }
        XCTAssertThrowsError(try ControlMessage.decode([0xFF, 0xFF, 0, 0, 0, 0, 0, 0], fds: []))
        var r = ByteReader([255, 255, 255, 127])
        XCTAssertThrowsError(try r.getString(), "a string longer than the message")
    }

    func testErrorsTravelWithCodeAndMessage() throws {
        let e = MXError(.badConnectionKey, "endpoint 3 refused the key 0x5")
        let bytes = ControlMessage.encodeError(e, token: 4)
        var m = try ControlMessage.decode(bytes, fds: [])
        let back = ControlMessage.decodeError(&m.payload)
        XCTAssertEqual(back.code, .badConnectionKey)
        XCTAssertEqual(back.message, e.message)
    }

    func testNICIDsAre48BitsAndDistinct() {
        let a = NICAddressing.nicID(hostname: "vm1", board: 0)
        let b = NICAddressing.nicID(hostname: "vm2", board: 0)
        let c = NICAddressing.nicID(hostname: "vm1", board: 1)
        XCTAssertEqual(Set([a, b, c]).count, 3)
        for n in [a, b, c] { XCTAssertEqual(n >> 48, 0) }
        XCTAssertEqual(NICAddressing.format(0x02_0A0B_0C0D_0E), "02:0a:0b:0c:0d:0e")
    }
}

final class TopologyTests: XCTestCase {
    func testHwlocSeesThisHostsProcessors() throws {
        let t = try HostTopology.load()
        XCTAssertGreaterThanOrEqual(t.cores.count, 1)
        XCTAssertGreaterThanOrEqual(t.processingUnits, t.cores.count)
        XCTAssertEqual(t.cores.flatMap(\.processingUnits).count, t.processingUnits, "every PU belongs to one core")
        XCTAssertEqual(t.processingUnits, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), "hwloc and the kernel agree on the PUs")
    }
}
