import XCTest
@testable import MyriXen
import CMyriXen

/// The pair ring over ordinary memory: the in-memory transport the protocol logic runs on.
final class RingTests: XCTestCase {
    var memory: UnsafeMutableRawPointer!
    let dataBytes = 16 * 1024

    override func setUp() {
        memory = .allocate(byteCount: RingLayout.headerPage + dataBytes, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: RingLayout.headerPage + dataBytes)
        formatRing(memory, dataBytes: dataBytes)
    }
    override func tearDown() { memory.deallocate() }

    func write(_ p: inout RingProducer, length: Int, seed: Int) -> Bool {
        guard let cell = p.reserve(payload: length) else { return false }
        Shm.store(cell, RecordLayout.kindOffset, RecordKind.eager.rawValue)
        Shm.store(cell, RecordLayout.lengthOffset, UInt32(length))
        Shm.store(cell, RecordLayout.matchInfoOffset, UInt64(seed))
        for i in 0..<length { (cell + RecordLayout.headerSize + i).storeBytes(of: UInt8(truncatingIfNeeded: i &+ seed), as: UInt8.self) }
        p.publish(cell)
        return true
    }

    func read(_ c: inout RingConsumer) -> (seed: Int, bytes: [UInt8])? {
        guard let cell = c.peek() else { return nil }
        let n = Int(Shm.load(cell, RecordLayout.lengthOffset, as: UInt32.self))
        let seed = Int(Shm.load(cell, RecordLayout.matchInfoOffset, as: UInt64.self))
        let bytes = (0..<n).map { (cell + RecordLayout.headerSize + $0).load(as: UInt8.self) }
        c.release(cell)
        return (seed, bytes)
    }

    func testGeometryIsValidated() throws {
        XCTAssertEqual(try ringCells(memory, mappedBytes: RingLayout.headerPage + dataBytes), dataBytes / 64)
        XCTAssertThrowsError(try ringCells(memory, mappedBytes: 4096)) { XCTAssertEqual(($0 as? MXError)?.code, .protocolError) }
        Shm.store(memory, RingLayout.magicOffset, UInt32(0))
        XCTAssertThrowsError(try ringCells(memory, mappedBytes: RingLayout.headerPage + dataBytes))
    }

    func testRecordsArriveInOrderAcrossManyWraps() {
        var p = RingProducer(base: memory, cells: dataBytes / 64)
        var c = RingConsumer(base: memory, cells: dataBytes / 64)
        XCTAssertNil(read(&c), "an empty ring has nothing")
        var sent = 0, received = 0
        let lengths = [0, 1, 31, 32, 33, 127, 128, 500, 2000, 4000, 64, 7]
        while received < 5000 {
            // Fill as much as fits, then drain a little: wraps land on every offset.
            while sent < 5000 && write(&p, length: lengths[sent % lengths.count], seed: sent) { sent += 1 }
            for _ in 0..<3 {
                guard let (seed, bytes) = read(&c) else { break }
                XCTAssertEqual(seed, received, "records come out in the order they went in")
                XCTAssertEqual(bytes.count, lengths[received % lengths.count])
                XCTAssertEqual(bytes, (0..<bytes.count).map { UInt8(truncatingIfNeeded: $0 &+ seed) })
                received += 1
            }
        }
        XCTAssertNil(read(&c))
    }

    func testFullRingRefusesUntilTheConsumerFreesSpace() {
        var p = RingProducer(base: memory, cells: dataBytes / 64)
        var c = RingConsumer(base: memory, cells: dataBytes / 64)
        var n = 0
        while write(&p, length: 1000, seed: n) { n += 1 }
        XCTAssertEqual(n, (dataBytes / 64) / 17, "17 cells per 1000-byte record with its header")
        XCTAssertNotNil(read(&c))
        XCTAssertTrue(write(&p, length: 1000, seed: n))
    }

    func testStaleBytesNeverLookLikeARecord() {
        // A payload that spells the stamp the next lap expects must not be taken for a record.
        var p = RingProducer(base: memory, cells: dataBytes / 64)
        var c = RingConsumer(base: memory, cells: dataBytes / 64)
        let cells = UInt64(dataBytes / 64)
        guard let cell = p.reserve(payload: 200) else { return XCTFail("no room") }
        Shm.store(cell, RecordLayout.kindOffset, RecordKind.eager.rawValue)
        Shm.store(cell, RecordLayout.lengthOffset, UInt32(200))
        // Cell 1's first word holds what cell 1 would carry as a stamp one lap later.
        Shm.store(cell + 64, 0, cells + 2)
        p.publish(cell)
        XCTAssertNotNil(read(&c))
        // Advance the consumer one lap by hand and look at cell 1: it must be clear.
        XCTAssertEqual(Shm.load(memory + RingLayout.headerPage + 64, 0, as: UInt64.self), 0)
    }

    func testAMalformedRecordMarksTheRingCorruptInsteadOfBeingRead() {
        var p = RingProducer(base: memory, cells: dataBytes / 64)
        var c = RingConsumer(base: memory, cells: dataBytes / 64)
        guard let cell = p.reserve(payload: 8) else { return XCTFail("no room") }
        Shm.store(cell, RecordLayout.kindOffset, RecordKind.eager.rawValue)
        Shm.store(cell, RecordLayout.lengthOffset, UInt32(1 << 20)) // longer than its one cell
        p.publish(cell)
        XCTAssertNil(c.peek())
        XCTAssertTrue(c.isCorrupt)

        var p2 = RingProducer(base: memory, cells: dataBytes / 64)
        var c2 = RingConsumer(base: memory, cells: dataBytes / 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: RingLayout.headerPage + dataBytes)
        formatRing(memory, dataBytes: dataBytes)
        guard let cell2 = p2.reserve(payload: 8) else { return XCTFail("no room") }
        Shm.store(cell2, RecordLayout.kindOffset, RecordKind.notify.rawValue)
        Shm.store(cell2, RecordLayout.cellsOffset, UInt16(60_000)) // runs past the ring's end
        cmx_store_release_u64(cell2, 1)
        XCTAssertNil(c2.peek())
        XCTAssertTrue(c2.isCorrupt)
    }

    func testMaxPayloadIsAQuarterOfTheRing() {
        let p = RingProducer(base: memory, cells: dataBytes / 64)
        XCTAssertEqual(p.maxPayload, dataBytes / 4 - RecordLayout.headerSize)
    }
}
