import XCTest
import Foundation
import MyriXenTestSupport
import OSUMethod

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
            ("gatherv", "Gatherv", bytes), ("scatterv", "Scatterv", bytes), ("allgatherv", "Allgatherv", bytes),
            ("alltoallv", "All-to-Allv Personalized Exchange", bytes), ("scan", "Scan", floats),
        ]
        for (test, title, sizes) in tests {
            let (code, out) = runCapturing(swiftrun, ["--timeout", "120", "-n", "3", mpibench, test, "-m", "1:64", "-i", "5", "-x", "1", "-f"])
            XCTAssertEqual(code, 0, "\(test)\n\(out)")
            XCTAssertTrue(out.contains("# OSU 7.x method, mpibench: \(title) Latency Test (MyriXen MPI 0.1, 3 ranks)\n"), "\(test)\n\(out)")
            let rows = out.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix("swiftrun") }.map { $0.split(separator: " ") }
            XCTAssertEqual(rows.map { test == "barrier" ? 0 : Int($0[0]) ?? -1 }, sizes, "\(test): one row per size\n\(out)")
            for row in rows {
                let numbers = row.dropFirst(test == "barrier" ? 0 : 1).compactMap { Double($0) }
                XCTAssertEqual(numbers.count, 7, "\(test): mean, min, max, iterations, p50, p99, p99.9\n\(out)")
                guard numbers.count == 7 else { continue }
                XCTAssertTrue(numbers[4] > 0 && numbers[4] <= numbers[5] && numbers[5] <= numbers[6], "\(test): p50 <= p99 <= p99.9\n\(out)")
                XCTAssertTrue(numbers[1] <= numbers[0] && numbers[0] <= numbers[2] && numbers[1] > 0, "\(test): min <= mean <= max\n\(out)")
                XCTAssertEqual(numbers[3], 5, "\(test): -i 5\n\(out)")
            }
        }
    }

    /// -c on 2 and 4 ranks: every test checks every byte each call delivers, and passes; a byte
    /// flipped on one rank (the MPIBENCH_CORRUPT hook) ends the run naming the rank, size, call
    /// and offset.
    func testEveryTestValidatesItsDataAndAWrongByteIsCaught() {
        let tests = ["allreduce", "bcast", "reduce", "allgather", "alltoall", "gather", "scatter", "reduce_scatter",
                     "barrier", "gatherv", "scatterv", "allgatherv", "alltoallv", "scan"]
        for ranks in [2, 4] {
            for test in tests {
                let (code, out) = runCapturing(swiftrun, ["--timeout", "120", "-n", String(ranks), mpibench, test, "-m", "1:4096", "-i", "3", "-x", "1", "-c"])
                XCTAssertEqual(code, 0, "\(test), \(ranks) ranks\n\(out)")
            }
        }
        for (test, rank, size, offset) in [("alltoall", 1, 64, 17), ("bcast", 3, 8, 0), ("allreduce", 0, 4096, 4000), ("scan", 2, 16, 5)] {
            let (code, out) = runCapturing("/usr/bin/env", ["MPIBENCH_CORRUPT=\(rank):\(size):\(offset)", swiftrun, "--timeout", "120", "-n", "4",
                                                            mpibench, test, "-m", "1:4096", "-i", "3", "-c"])
            XCTAssertNotEqual(code, 0, "\(test): the flipped byte fails the run\n\(out)")
            let unit = test == "allreduce" || test == "scan" ? "element \(offset / 4) (byte offset \(offset / 4 * 4))" : "byte at offset \(offset)"
            XCTAssertTrue(out.contains("rank \(rank), size \(size), call 0: \(unit) is "), "\(test)\n\(out)")
        }
    }

    /// --format json and csv: what a script reads, from a real run of 2 ranks.
    func testJSONAndCSVResultsOfARealRun() throws {
        let (code, out) = runCapturing(swiftrun, ["--timeout", "120", "-n", "2", mpibench, "bcast", "-m", "1:8", "-i", "5", "-x", "1", "--format", "json"])
        XCTAssertEqual(code, 0, out)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        XCTAssertEqual(object["test"] as? String, "bcast")
        XCTAssertEqual(object["ranks"] as? Int, 2)
        XCTAssertEqual((object["layout"] as? [[String: Any]])?.map { $0["ranks"] as? Int }, [2], "both ranks on this host")
        XCTAssertEqual((object["command"] as? [String])?.suffix(2), ["--format", "json"])
        let rows = try XCTUnwrap(object["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["size"] as? Int }, [1, 2, 4, 8])
        for row in rows {
            let avg = row["avg"] as? Double ?? -1, lo = row["min"] as? Double ?? -1, hi = row["max"] as? Double ?? -1
            XCTAssertTrue(lo > 0 && lo <= avg && avg <= hi, "\(row)")
            XCTAssertEqual(row["iterations"] as? Int, 5)
            XCTAssertGreaterThan(row["p99.9"] as? Double ?? 0, 0)
        }
        let (code2, csv) = runCapturing(swiftrun, ["--timeout", "120", "-n", "2", mpibench, "gather", "-m", "4:8", "-i", "5", "--format", "csv"])
        XCTAssertEqual(code2, 0, csv)
        let lines = csv.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, OSUFormat.csvHeader, csv)
        XCTAssertEqual(lines.dropFirst().map { String($0.split(separator: ",")[1]) }, ["4", "8"], csv)
        for line in lines.dropFirst() {
            let f = line.split(separator: ",").map(String.init)
            XCTAssertEqual(f.count, 14, line)
            guard f.count == 14 else { continue }
            XCTAssertEqual([f[0], f[5], f[9], f[10], f[11]], ["gather", "5", "2", "1", "MyriXen MPI 0.1"], line)
            let p = f[6...8].compactMap(Double.init)
            XCTAssertTrue(p.count == 3 && p[0] > 0 && p[0] <= p[1] && p[1] <= p[2], line)
        }
        let (code3, bad) = runCapturing(swiftrun, ["--timeout", "60", "-n", "2", mpibench, "bcast", "--format", "xml"])
        XCTAssertEqual(code3, 64, bad)
        XCTAssertTrue(bad.contains("unknown format 'xml'; the formats are osu, json, csv"), bad)
    }

    /// Rank 0 alone says what is wrong, once; every rank ends with the same code.
    func testABadCommandLineIsReportedOnceNamingTheValidTests() {
        let (code, out) = runCapturing(swiftrun, ["--timeout", "60", "-n", "3", mpibench, "allreduse"])
        XCTAssertEqual(code, 64, out)
        let error = "unknown test 'allreduse'; the tests are allreduce, bcast, reduce, allgather, alltoall, gather, scatter, reduce_scatter, barrier, gatherv, scatterv, allgatherv, alltoallv, scan"
        XCTAssertEqual(out.components(separatedBy: error).count - 1, 1, out)
        let (code2, out2) = runCapturing(swiftrun, ["--timeout", "60", "-n", "2", mpibench, "reduce", "-m", "1:2"])
        XCTAssertEqual(code2, 64, out2)
        XCTAssertTrue(out2.contains("-m 1:2: reduce sums floats, and no size from MIN to MAX doubling is 4 B or more"), out2)
        let (code3, out3) = runCapturing(swiftrun, ["--timeout", "60", "-n", "1", mpibench, "bcast"])
        XCTAssertEqual(code3, 2, out3)
        XCTAssertTrue(out3.contains("mpibench: needs at least 2 ranks, got 1"), out3)
    }
}
