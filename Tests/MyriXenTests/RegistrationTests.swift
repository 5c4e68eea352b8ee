import XCTest
@testable import MyriXen

final class RegistrationTests: XCTestCase {
    func testPullsAreServedOnlyInsideTheNamedRegion() {
        let page = UnsafeMutableRawPointer.allocate(byteCount: ProtectedPage.size, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0, count: ProtectedPage.size)
        let table = RegionTable(protectedPage: page)
        let gen = table.install(id: 3, base: 0x10000, length: 4096)
        XCTAssertEqual(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 0, length: 4096), 0x10000)
        XCTAssertEqual(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 96, length: 4000), 0x10060)
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 1, length: 4096), "one byte past the end")
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 4097, length: 0))
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen, offset: .max, length: 2), "no overflow")
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen &+ 1, offset: 0, length: 1), "another generation")
        XCTAssertNil(RegionTable.resolve(page: page, id: 4, generation: 1, offset: 0, length: 1), "an unused region")
        XCTAssertNil(RegionTable.resolve(page: page, id: 999, generation: 1, offset: 0, length: 1), "no such region id")
        table.remove(id: 3)
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 0, length: 1), "a removed region")
        let gen2 = table.install(id: 3, base: 0x20000, length: 10)
        XCTAssertNotEqual(gen, gen2, "reusing an id changes its generation")
        XCTAssertNil(RegionTable.resolve(page: page, id: 3, generation: gen, offset: 0, length: 1))
    }

    func testCacheHitsCoveringRegionsAndPins() {
        var cache = RegistrationCache(capacity: 4)
        XCTAssertNil(cache.lookup(base: 1000, length: 100))
        let i = cache.insert(base: 1000, length: 100, regionID: 0, generation: 1)
        XCTAssertEqual(cache.entries[i].pins, 1)
        XCTAssertEqual(cache.lookup(base: 1000, length: 100), i, "the same buffer again is a hit")
        XCTAssertEqual(cache.lookup(base: 1050, length: 50), i, "a covered part is a hit")
        XCTAssertNil(cache.lookup(base: 1050, length: 51), "past the end is a miss")
        XCTAssertEqual(cache.entries[i].pins, 3)
        XCTAssertEqual(cache.hits, 2)
        XCTAssertEqual(cache.misses, 2)
    }

    func testEvictionTakesTheLeastRecentlyUsedUnpinnedRegion() {
        var cache = RegistrationCache(capacity: 3)
        for k in 0..<3 { _ = cache.insert(base: UInt64(k * 1000), length: 100, regionID: UInt32(k), generation: 1) }
        XCTAssertTrue(cache.isFull)
        XCTAssertNil(cache.evictionCandidate(), "every region is pinned by a send")
        cache.unpin(regionID: 1)
        cache.unpin(regionID: 2)
        XCTAssertEqual(cache.evictionCandidate().map { cache.entries[$0].regionID }, 1, "region 1 is older")
        _ = cache.lookup(base: 1000, length: 10)
        cache.unpin(regionID: 1)
        XCTAssertEqual(cache.evictionCandidate().map { cache.entries[$0].regionID }, 2, "region 1 was used again")
    }

    func testInvalidationSparesPinnedRegions() {
        var cache = RegistrationCache()
        _ = cache.insert(base: 0, length: 4096, regionID: 0, generation: 1)
        _ = cache.insert(base: 8192, length: 4096, regionID: 1, generation: 1)
        cache.unpin(regionID: 1)
        XCTAssertEqual(cache.overlapping(base: 0, length: 1 << 20).map { cache.entries[$0].regionID }, [1])
        XCTAssertEqual(cache.overlapping(base: 4096, length: 4096), [], "adjacent is not overlapping")
    }
}
