import XCTest
import MyriXenTestSupport

/// mpibench as bin/bench-collectives runs it: every OSU test through swiftrun, and what a bad
/// command line gets. (Its method and layout are OSUMethodTests'; the collectives' results are
/// CollectiveTests'.)
final class MPIBenchTests: XCTestCase {
    let swiftrun = BuiltProducts.path("swiftrun")
    let mpibench = BuiltProducts.path("mpibench")

    /// Three ranks (reduce_scatter's floats do not split evenly over them), -f: every row of every
    /// test, min <= mean <= max, the iterations given.
    func testEveryTestPrintsEveryRowOnThreeRanks() {
        let bytes = (0...6).map { 1 << $0 }, floats = (2...6).map { 1 << $0 }
        let tests: [(String, String, [Int])] = [
            ("allreduce", "Allreduce", floats), ("bcast", "Broadcast", bytes), ("reduce", "Reduce", floats),
            ("allgather", "Allgather", bytes), ("alltoall", "All-to-All Personalized Exchange", bytes),
            ("gather", "Gather", bytes), ("scatter", "Scatter", bytes), ("reduce_scatter", "Reduce_scatter", floats),
            ("barrier", "Barrier", [0]),
        ]
        for (test, title, sizes) in tests {
            let (code, out) = runCapturing(swiftrun, ["--timeout", "120", "-n", "3", mpibench, test, "-m", "1:64", "-i", "5", "-x", "1", "-f"])
            XCTAssertEqual(code, 0, "\(test)\n\(out)")
            XCTAssertTrue(out.contains("# OSU 7.x method, mpibench: \(title) Latency Test (MyriXen MPI 0.1, 3 ranks)\n"), "\(test)\n\(out)")
            let rows = out.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix("swiftrun") }.map { $0.split(separator: " ") }
            XCTAssertEqual(rows.map { test == "barrier" ? 0 : Int($0[0]) ?? -1 }, sizes, "\(test): one row per size\n\(out)")
            for row in rows {
                let numbers = row.dropFirst(test == "barrier" ? 0 : 1).compactMap { Double($0) }
                XCTAssertEqual(numbers.count, 4, "\(test): mean, min, max, iterations\n\(out)")
                guard numbers.count == 4 else { continue }
                XCTAssertTrue(numbers[1] <= numbers[0] && numbers[0] <= numbers[2] && numbers[1] > 0, "\(test): min <= mean <= max\n\(out)")
                XCTAssertEqual(numbers[3], 5, "\(test): -i 5\n\(out)")
            }
        }
    }

    /// Rank 0 alone says what is wrong, once; every rank ends with the same code.
    func testABadCommandLineIsReportedOnceNamingTheValidTests() {
        let (code, out) = runCapturing(swiftrun, ["--timeout", "60", "-n", "3", mpibench, "allreduse"])
        XCTAssertEqual(code, 64, out)
        let error = "unknown test 'allreduse'; the tests are allreduce, bcast, reduce, allgather, alltoall, gather, scatter, reduce_scatter, barrier"
        XCTAssertEqual(out.components(separatedBy: error).count - 1, 1, out)
        let (code2, out2) = runCapturing(swiftrun, ["--timeout", "60", "-n", "2", mpibench, "reduce", "-m", "1:2"])
        XCTAssertEqual(code2, 64, out2)
        XCTAssertTrue(out2.contains("-m 1:2: reduce sums floats, and no size from MIN to MAX doubling is 4 B or more"), out2)
        let (code3, out3) = runCapturing(swiftrun, ["--timeout", "60", "-n", "1", mpibench, "bcast"])
        XCTAssertEqual(code3, 2, out3)
        XCTAssertTrue(out3.contains("mpibench: needs at least 2 ranks, got 1"), out3)
    }
}
