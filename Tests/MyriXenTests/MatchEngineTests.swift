import XCTest
@testable import MyriXen

final class MatchEngineTests: XCTestCase {
    var engine = MatchEngine(capacity: 4)
    override func tearDown() { engine.destroy() }

    func posted(_ r: MatchEngine.PostResult) -> Int32? {
        if case let .posted(t) = r { return t }
        return nil
    }

    func testExactMatchTakesTheFirstFittingReceive() {
        XCTAssertNotNil(posted(engine.post(receive: 1, matchInfo: 7, mask: .max)))
        XCTAssertNotNil(posted(engine.post(receive: 2, matchInfo: 8, mask: .max)))
        XCTAssertEqual(engine.arrive(matchInfo: 8), 2)
        XCTAssertNil(engine.arrive(matchInfo: 8), "a receive matches once")
        XCTAssertEqual(engine.arrive(matchInfo: 7), 1)
        XCTAssertEqual(engine.postedCount, 0)
    }

    func testMaskedAndWildcardMatching() {
        // Low 16 bits must be 0x0042, the rest is free.
        _ = engine.post(receive: 1, matchInfo: 0x42, mask: 0xFFFF)
        XCTAssertNil(engine.arrive(matchInfo: 0x43))
        XCTAssertEqual(engine.arrive(matchInfo: 0xDEAD_0000_0042), 1)
        // Mask 0 takes anything.
        _ = engine.post(receive: 2, matchInfo: 0, mask: 0)
        XCTAssertEqual(engine.arrive(matchInfo: 0x1234_5678), 2)
    }

    func testMaskValidity() {
        XCTAssertTrue(MatchEngine.isValid(matchInfo: 0x42, mask: 0xFF))
        XCTAssertFalse(MatchEngine.isValid(matchInfo: 0x142, mask: 0xFF))
        XCTAssertTrue(MatchEngine.isValid(matchInfo: 0, mask: 0))
    }

    func testReceivesMatchInPostingOrder() {
        for r in Int32(0)..<10 { _ = engine.post(receive: r, matchInfo: 0, mask: 0) }
        for r in Int32(0)..<10 { XCTAssertEqual(engine.arrive(matchInfo: UInt64(r * 3)), r) }
    }

    func testUnexpectedMessagesAreMatchedInArrivalOrder() {
        for u in Int32(0)..<100 {
            XCTAssertNil(engine.arrive(matchInfo: UInt64(u % 2)))
            engine.enqueueUnexpected(u, matchInfo: UInt64(u % 2))
        }
        XCTAssertEqual(engine.unexpectedCount, 100)
        // Odd ones, oldest first.
        for k in 0..<50 {
            XCTAssertEqual(engine.post(receive: 1000, matchInfo: 1, mask: .max), .matchedUnexpected(Int32(2 * k + 1)))
        }
        XCTAssertEqual(engine.peekUnexpected(matchInfo: 0, mask: .max), 0)
        XCTAssertNotNil(posted(engine.post(receive: 5, matchInfo: 1, mask: .max)), "no odd one left: the receive is queued")
        XCTAssertEqual(engine.unexpectedIDs(), (0..<50).map { Int32(2 * $0) })
    }

    func testProbeDoesNotConsume() {
        engine.enqueueUnexpected(9, matchInfo: 0xAB)
        XCTAssertEqual(engine.peekUnexpected(matchInfo: 0xAB, mask: .max), 9)
        XCTAssertEqual(engine.peekUnexpected(matchInfo: 0xA0, mask: 0xF0), 9)
        XCTAssertNil(engine.peekUnexpected(matchInfo: 0xAC, mask: .max))
        XCTAssertEqual(engine.unexpectedCount, 1)
        XCTAssertEqual(engine.takeUnexpected(matchInfo: 0xAB, mask: .max), 9)
        XCTAssertEqual(engine.unexpectedCount, 0)
    }

    func testCancelRemovesOnlyUnmatchedReceives() throws {
        let t1 = try XCTUnwrap(posted(engine.post(receive: 1, matchInfo: 5, mask: .max)))
        let t2 = try XCTUnwrap(posted(engine.post(receive: 2, matchInfo: 5, mask: .max)))
        XCTAssertTrue(engine.cancel(receive: 1, ticket: t1))
        XCTAssertFalse(engine.cancel(receive: 1, ticket: t1), "cancelling twice fails")
        XCTAssertEqual(engine.arrive(matchInfo: 5), 2, "the cancelled receive no longer matches")
        XCTAssertFalse(engine.cancel(receive: 2, ticket: t2), "a matched receive cannot be cancelled")
    }

    func testCancelRefusesAnotherRequestsTicket() throws {
        let t1 = try XCTUnwrap(posted(engine.post(receive: 1, matchInfo: 5, mask: .max)))
        XCTAssertFalse(engine.cancel(receive: 2, ticket: t1))
        engine.enqueueUnexpected(3, matchInfo: 9)
        XCTAssertEqual(engine.postedCount, 1)
    }

    func testPoolGrowsBeyondItsInitialCapacity() {
        for r in Int32(0)..<1000 { _ = engine.post(receive: r, matchInfo: UInt64(r), mask: .max) }
        for r in Int32(0)..<1000 { XCTAssertEqual(engine.arrive(matchInfo: UInt64(999 - r)), 999 - r) }
    }
}

/// The unexpected payloads' buffers: reused by size class, so a steady state of the same
/// sizes arriving unexpected allocates nothing; what exceeds the classes or the kept count
/// goes back to the system.
final class BufferPoolTests: XCTestCase {
    func testBuffersAreReusedBySizeClass() {
        var pool = BufferPool()
        defer { pool.destroy() }
        XCTAssertEqual(BufferPool.sizeClass(1), 0)
        XCTAssertEqual(BufferPool.sizeClass(64), 0)
        XCTAssertEqual(BufferPool.sizeClass(65), 1)
        XCTAssertEqual(BufferPool.sizeClass(64 << 10), 10)
        XCTAssertNil(BufferPool.sizeClass((64 << 10) + 1))
        let a = pool.take(100)!
        a.storeBytes(of: 0xABCD, as: UInt64.self)
        pool.give(a, bytes: 100)
        let b = pool.take(128)! // the same class (65 to 128 bytes): the same buffer again
        XCTAssertEqual(a, b)
        XCTAssertEqual(pool.reused, 1)
        let c = pool.take(129)! // the next class: a new one
        XCTAssertNotEqual(b, c)
        pool.give(b, bytes: 128)
        pool.give(c, bytes: 129)
        // More outstanding than a class keeps: the extra ones are freed, the rest come back.
        let many = (0..<(BufferPool.kept + 10)).map { _ in pool.take(8)! }
        for m in many { pool.give(m, bytes: 8) }
        let before = pool.reused
        let again = (0..<BufferPool.kept).map { _ in pool.take(8)! }
        XCTAssertEqual(pool.reused - before, BufferPool.kept, "every one of them from the pool")
        XCTAssertEqual(Set(again).count, BufferPool.kept)
        for m in again { pool.give(m, bytes: 8) }
        // Longer than the largest class: straight from and to the system.
        let big = pool.take(1 << 20)!
        big.storeBytes(of: 1, toByteOffset: (1 << 20) - 8, as: UInt64.self)
        pool.give(big, bytes: 1 << 20)
    }
}
