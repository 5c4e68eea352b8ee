import XCTest
@testable import MyriXen

/// The receiver's choice among the three local ways, driven with known costs.
final class LocalPathChooserTests: XCTestCase {
    /// Runs `n` decisions for messages of `length`, "measuring" each way at the given cost
    /// (ns per message), and counts which way was taken.
    func drive(_ c: inout LocalPathChooser, length: Int, n: Int, cost: [LocalPathChoice: UInt64],
               alone: Bool = true, splittable: Bool = true) -> [LocalPathChoice: Int] {
        var taken: [LocalPathChoice: Int] = [:]
        for _ in 0..<n {
            let (k, timed) = c.choose(length: length, alone: alone, splittable: splittable)
            taken[k, default: 0] += 1
            if timed { c.record(length: length, path: k, nanoseconds: cost[k]!) }
        }
        return taken
    }

    func testEveryWayIsTriedThenTheCheapestKeptWithRareTries() {
        var c = LocalPathChooser()
        let first = (0..<3).map { _ -> LocalPathChoice in
            let (k, timed) = c.choose(length: 65536, alone: true, splittable: true)
            XCTAssertTrue(timed, "a first try is timed")
            c.record(length: 65536, path: k, nanoseconds: [LocalPathChoice.pull: 5000, .split: 3000, .pieces: 9000][k]!)
            return k
        }
        XCTAssertEqual(Set(first), [.pull, .split, .pieces], "each way once before choosing")
        let taken = drive(&c, length: 65536, n: 10_000, cost: [.pull: 5000, .split: 3000, .pieces: 9000])
        XCTAssertEqual(c.estimate(length: 65536).best, .split)
        XCTAssertGreaterThan(taken[.split, default: 0], 9_950, "the cheapest nearly always: \(taken)")
        XCTAssertGreaterThan(taken[.pull, default: 0] + taken[.pieces, default: 0], 0, "the others are tried again now and then")
        // Another size class learns on its own.
        XCTAssertEqual(c.estimate(length: 1 << 20).pull, 0)
    }

    func testAMachineThatChangesIsFollowed() {
        var c = LocalPathChooser()
        _ = drive(&c, length: 1 << 20, n: 2_000, cost: [.pull: 80_000, .split: 40_000, .pieces: 60_000])
        XCTAssertEqual(c.estimate(length: 1 << 20).best, .split)
        // The split becomes slow (its sender busy, say): within a few thousand messages the pieces win.
        let taken = drive(&c, length: 1 << 20, n: 5_000, cost: [.pull: 80_000, .split: 200_000, .pieces: 60_000])
        XCTAssertEqual(c.estimate(length: 1 << 20).best, .pieces, "\(taken)")
        // And a faster sample is believed at once.
        c.record(length: 1 << 20, path: .pull, nanoseconds: 10_000)
        XCTAssertEqual(c.estimate(length: 1 << 20).best, .pull)
    }

    func testOneStallDoesNotDiscardAWay() {
        var c = LocalPathChooser()
        _ = drive(&c, length: 16384, n: 100, cost: [.pull: 2000, .split: 3000, .pieces: 2500])
        c.record(length: 16384, path: .pull, nanoseconds: 1_000_000)  // a preempted pull
        XCTAssertEqual(c.estimate(length: 16384).best, .pull, "one stall moves the estimate by an eighth of at most twice it")
    }

    func testWaysThatNeedTheSenderAreTriedOnlyWhenAloneAndTheSplitOnlyIntoOneBuffer() {
        var c = LocalPathChooser()
        let busy = drive(&c, length: 65536, n: 1_000, cost: [.pull: 5000, .split: 1000, .pieces: 1000], alone: false)
        XCTAssertEqual(busy, [.pull: 1_000], "not alone: no fair try of the split or the pieces")
        let segmented = drive(&c, length: 65536, n: 1_000, cost: [.pull: 5000, .split: 1000, .pieces: 3000], splittable: false)
        XCTAssertNil(segmented[.split], "no split into segments")
        XCTAssertEqual(c.estimate(length: 65536).best, .pieces)
        XCTAssertEqual(c.estimate(length: 65536).split, 0)
    }

    func testSizeClassesArePowersOfTwo() {
        XCTAssertEqual(LocalPathChooser.sizeClass(8192), LocalPathChooser.sizeClass(4097))
        XCTAssertEqual(LocalPathChooser.sizeClass(8193), LocalPathChooser.sizeClass(16384))
        XCTAssertNotEqual(LocalPathChooser.sizeClass(16384), LocalPathChooser.sizeClass(16385))
        XCTAssertEqual(LocalPathChooser.sizeClass(1 << 40), LocalPathChooser.classes - 1)
        XCTAssertEqual(LocalPathChooser.sizeClass(0), 0)
    }
}
