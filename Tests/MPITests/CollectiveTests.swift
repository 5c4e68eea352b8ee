import XCTest
import MPI
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The collectives through swiftrun: one job per rank count runs every operation with every
/// algorithm forced in turn (Tests/CollectiveTestRank), every rank checking its results
/// against a sequential reference it computes itself.
final class CollectiveTests: XCTestCase {
    let swiftrun = BuiltProducts.path("swiftrun")
    let rank = BuiltProducts.path("CollectiveTestRank")

    /// `n` ranks, each of which must report its checks.
    func expectAllRanks(_ n: Int, _ args: [String], environment: [String: String] = [:], _ what: String) {
        let (code, out) = runCapturing(swiftrun, args, environment: environment)
        XCTAssertEqual(code, 0, "\(what)\n\(out)")
        for r in 0..<n {
            XCTAssertTrue(out.range(of: "rank \(r): ok [0-9]+ checks\n", options: .regularExpression) != nil, "\(what): rank \(r)\n\(out)")
        }
    }

    func testEveryCollectiveOnOneToNineRanks() {
        for n in 1...9 {
            expectAllRanks(n, ["--timeout", "120", "-n", String(n), rank], "\(n) ranks")
        }
    }

    /// 16 ranks on 2 cores: waiting ranks yield and then sleep on their event channel.
    func testSixteenRanksOversubscribed() {
        expectAllRanks(16, ["--timeout", "120", "-n", "16", rank], "16 ranks oversubscribed")
    }

    /// The shared segment's two ways of working: few, large calls where the ranks outnumber
    /// the CPUs (crowded, as every job of more than two ranks here), many smaller ones
    /// pipelined where each rank has a CPU (told so, whatever this machine has).
    func testSharedSegmentCrowdedAndNot() {
        for (n, cpus) in [(2, 1), (4, 4), (5, 8)] {
            expectAllRanks(n, ["--timeout", "120", "-n", String(n), rank, "sharedmemory"], environment: [MXDefaults.hostCPUsEnvironment: String(cpus)],
                           "\(n) ranks told of \(cpus) CPUs")
        }
    }

    /// 8 MiB worth of elements (the long-message algorithms, rendezvous underneath).
    func testLargeMessagesOnFourAndFiveRanks() {
        for n in [4, 5] {
            expectAllRanks(n, ["--timeout", "300", "-n", String(n), rank, "--large"], "\(n) ranks, 8 MiB")
        }
    }

    /// Two emulated VMs with two ranks each (pairs across VMs on the wire), once with one frame
    /// in 29 lost on the wire.
    func testAcrossTwoEmulatedVMs() throws {
        guard let cluster = try EmulatedVMs() else { throw XCTSkip("needs root and iproute2 to make network namespaces") }
        defer { cluster.remove() }
        for (mapping, drop) in [("node", nil), ("slot", nil), ("node", "29")] as [(String, String?)] {
            expectAllRanks(4, ["--timeout", "180", "-f", cluster.hostfile, "--map-by", mapping, "-n", "4", rank],
                           environment: drop.map { [MXWire.dropEnvironment: $0] } ?? [:],
                           "4 ranks by \(mapping) on two VMs, drop \(drop ?? "none")")
        }
    }

    /// A thousand calls of each short collective through the shared segment allocate nothing
    /// (every allocator call of the ranks is counted by a preloaded library).
    func testSteadyStateAllocatesNothing() throws {
        let source = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/") + "/Programs/count_allocations.c"
        let library = "/tmp/mpitest-count-allocations-\(getpid()).so"
        addTeardownBlock { unlink(library) }
        let (c, o) = runCapturing("/usr/bin/cc", ["-shared", "-fPIC", "-O2", "-o", library, source])
        guard c == 0 else { throw XCTSkip("cc cannot build the allocation counter: \(o)") }
        for n in [2, 4] {
            expectAllRanks(n, ["--timeout", "120", "-n", String(n), rank, "allocations"], environment: ["LD_PRELOAD": library],
                           "\(n) ranks counting allocations")
        }
    }

    /// A rank killed while the others wait for it in collectives (on the shared segment and on
    /// the channel): the job ends promptly, the dead rank named, nothing left behind.
    func testARankKilledInACollectiveEndsTheJob() {
        let start = monotonicNanoseconds()
        let (code, out) = runCapturing(swiftrun, ["--timeout", "60", "-n", "4", rank, "killed"])
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue(out.contains("rank 3 (pid"), out)
        XCTAssertTrue(out.contains("killed by signal 9 (SIGKILL)"), out)
        XCTAssertFalse(out.contains("a collective with a killed rank completed"), out)
        XCTAssertLessThan(seconds, 10, "the waiting ranks were ended promptly\n\(out)")
    }

    /// A forced algorithm that does not exist is an error of MPI.initialize naming the valid ones.
    func testAnUnknownForcedAlgorithmIsAnErrorListingTheValidOnes() {
        let (code, out) = runCapturing(swiftrun, ["-n", "2", rank], environment: ["MYRIXEN_COLL_ALLREDUCE": "fastest"])
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue(out.contains("MYRIXEN_COLL_ALLREDUCE=fastest is not an algorithm of allreduce; valid: recursive_doubling"), out)
        let (code2, out2) = runCapturing(swiftrun, ["-n", "1", rank], environment: ["MYRIXEN_COLL_ALLREDUSE": "ring"])
        XCTAssertNotEqual(code2, 0, out2)
        XCTAssertTrue(out2.contains("MYRIXEN_COLL_ALLREDUSE names no collective operation; valid variables: MYRIXEN_COLL_BARRIER"), out2)
    }
}
