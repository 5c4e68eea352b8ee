import XCTest
import OSUMethod
import Foundation

/// The OSU 7.x collective method as mpibench runs it: sizes, counts, reduce_scatter's split and
/// the output layout, column for column against OMB's printf formats.
final class OSUMethodTests: XCTestCase {
    func testSizesDoubleAndReductionsStartAtOneFloat() throws {
        let bcast = try OSUPlan(.bcast, sizes: 1...16)
        XCTAssertEqual(bcast.steps.map(\.size), [1, 2, 4, 8, 16])
        XCTAssertEqual(bcast.steps.map(\.count), [1, 2, 4, 8, 16])
        let allreduce = try OSUPlan(.allreduce, sizes: 1...16)
        XCTAssertEqual(allreduce.steps.map(\.size), [4, 8, 16], "1 and 2 B hold no float")
        XCTAssertEqual(allreduce.steps.map(\.count), [1, 2, 4])
        XCTAssertEqual(try OSUPlan(.reduce, sizes: 3...20).steps.map(\.size), [6, 12], "from MIN, doubling, up to MAX")
        XCTAssertEqual(try OSUPlan(.gather).steps.map(\.size).last, 1 << 20, "default MAX: 1 MiB")
        XCTAssertEqual(try OSUPlan(.gather).steps.count, 21)
        XCTAssertEqual(try OSUPlan(.barrier, sizes: 4...64).steps, [OSUPlan.Step(size: 0, count: 0, iterations: 1000, warmup: 100)],
                       "barrier: one row whatever -m says")
    }

    func testIterationsSwitchAbove8KiBUnlessGiven() throws {
        let plan = try OSUPlan(.alltoall, sizes: 4096...32768)
        XCTAssertEqual(plan.steps.map(\.iterations), [1000, 1000, 100, 100])
        XCTAssertEqual(plan.steps.map(\.warmup), [100, 100, 10, 10])
        let given = try OSUPlan(.allreduce, sizes: 4096...32768, iterations: 7, warmup: 0)
        XCTAssertEqual(given.steps.map(\.iterations), [7, 7, 7, 7], "-i sets small and large alike")
        XCTAssertEqual(given.steps.map(\.warmup), [0, 0, 0, 0])
    }

    func testBadSizesAndCountsSayWhatToDo() {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch let e as OSUOptionError { return e.description } catch { return "\(error)" }
        }
        XCTAssertEqual(try? OSUPlan.parseSizes("4:1024"), 4...1024)
        XCTAssertEqual(try? OSUPlan.parseSizes("512"), 1...512, "MAX alone")
        for bad in ["", "4:", ":8", "a:8", "1:2:3", "4 :8"] {
            XCTAssertEqual(message { _ = try OSUPlan.parseSizes(bad) }, "-m must be [MIN:]MAX, e.g. -m 4:1048576, not '\(bad)'")
        }
        for bad in ["0:8", "9:8", "1:1073741825"] {
            XCTAssertEqual(message { _ = try OSUPlan.parseSizes(bad) }, "-m must be [MIN:]MAX with 1 <= MIN <= MAX <= 1073741824 (1 GiB), not '\(bad)'")
        }
        XCTAssertEqual(message { _ = try OSUPlan(.reduceScatter, sizes: 1...2) },
                       "-m 1:2: reduce_scatter sums floats, and no size from MIN to MAX doubling is 4 B or more (try -m 4:MAX with MAX >= 4)")
        XCTAssertEqual(message { _ = try OSUPlan(.allreduce, sizes: 3...5) }, "-m 3:5: allreduce sums floats, and no size from MIN to MAX doubling is 4 B or more (try -m 4:MAX with MAX >= 4)")
        XCTAssertEqual(message { _ = try OSUPlan(.bcast, iterations: 0) }, "-i must be at least 1, not 0")
        XCTAssertEqual(message { _ = try OSUPlan(.bcast, warmup: -1) }, "-x must be at least 0, not -1")
    }

    func testReduceScatterSplitsAsOMBDoes() {
        XCTAssertEqual(OSUPlan.reduceScatterCounts(8, ranks: 4), [2, 2, 2, 2])
        XCTAssertEqual(OSUPlan.reduceScatterCounts(10, ranks: 4), [3, 3, 2, 2], "the remainder to the first ranks")
        XCTAssertEqual(OSUPlan.reduceScatterCounts(2, ranks: 8), [1, 1, 0, 0, 0, 0, 0, 0], "fewer floats than ranks")
        XCTAssertEqual(OSUPlan.reduceScatterCounts(1, ranks: 1), [1])
        for (count, ranks) in [(1, 3), (5, 3), (262_144, 6), (7, 9)] {
            XCTAssertEqual(OSUPlan.reduceScatterCounts(count, ranks: ranks).reduce(0, +), count, "\(count) over \(ranks): every float once")
        }
    }

    func testOutputLayoutIsOMBs() {
        let percentiles = "   P50 Latency(us)   P99 Latency(us) P99.9 Latency(us)"
        XCTAssertEqual(OSUFormat.preamble(.allreduce, program: "mpibench", library: "MyriXen MPI 0.1", ranks: 2, full: false), [
            "",
            "# OSU 7.x method, mpibench: Allreduce Latency Test (MyriXen MPI 0.1, 2 ranks)",
            "# Datatype: MPI_FLOAT.",
            "# Size       Avg Latency(us)",
        ])
        XCTAssertEqual(OSUFormat.preamble(.alltoall, program: "p", library: "l", ranks: 8, full: true), [
            "",
            "# OSU 7.x method, p: All-to-All Personalized Exchange Latency Test (l, 8 ranks)",
            "# Datatype: MPI_CHAR.",
            // OMB's columns, then ours: the percentiles.
            "# Size       Avg Latency(us)   Min Latency(us)   Max Latency(us)  Iterations" + percentiles,
        ])
        XCTAssertEqual(OSUFormat.preamble(.barrier, program: "p", library: "l", ranks: 3, full: true).dropFirst(2),
                       ["# Avg Latency(us)   Min Latency(us)   Max Latency(us)  Iterations" + percentiles])
        let step = OSUPlan.Step(size: 4, count: 1, iterations: 1000, warmup: 100)
        XCTAssertEqual(OSUFormat.row(.allreduce, step, average: 1.094, min: 0.5, max: 2, full: false), "4                       1.09")
        XCTAssertEqual(OSUFormat.row(.allreduce, step, average: 12345.678, min: 0.125, max: 99999.995, full: true),
                       "4                   12345.68              0.12          99999.99        1000",
                       "printf's rounding of the binary value: 0.125 to even, 99999.995 is 99999.99499...")
        let big = OSUPlan.Step(size: 1_048_576, count: 262_144, iterations: 100, warmup: 10)
        XCTAssertEqual(OSUFormat.row(.reduce, big, average: 450.5, min: 0, max: 0, full: false), "1048576               450.50")
        XCTAssertEqual(OSUFormat.row(.barrier, OSUPlan.Step(size: 0, count: 0, iterations: 1000, warmup: 100),
                                     average: 0.74, min: 0.7, max: 0.8, full: true),
                       "             0.74              0.70              0.80        1000")
        XCTAssertEqual(OSUFormat.row(.bcast, step, average: 1234567890123.25, min: 0, max: 0, full: false), "4           1234567890123.25",
                       "wider than the field: printf widens it")
    }
}

/// mpibench's machine-readable results: JSON a parser reads back to the same figures, CSV with
/// RFC 4180 quoting, every figure and what ran.
final class OSUResultFormatTests: XCTestCase {
    func sample() -> OSURun {
        var r = OSURun(test: .allreduce, program: "mpibench", library: "MyriXen MPI 0.1",
                       commandLine: ["mpibench", "allreduce", "-m", "4:8", "--note=\"a, b\"\n"], host: "vm1",
                       hostOfRank: ["vm1", "vm1", "vm2", "vm1"])
        r.rows = [OSURun.Row(size: 4, average: 1.5, min: 1.25, max: 2.125, iterations: 1000, p50: 1.5, p99: 2, p999: 2.1),
                  OSURun.Row(size: 8, average: 10.00006, min: 9, max: 11, iterations: 100, p50: 10, p99: 10.9, p999: 11)]
        return r
    }

    func testTheLayoutCountsRanksPerHostInOrderOfFirstRank() {
        let r = sample()
        XCTAssertEqual(r.layout.map(\.host), ["vm1", "vm2"])
        XCTAssertEqual(r.layout.map(\.ranks), [3, 1])
        XCTAssertEqual(r.ranks, 4)
    }

    func testJSONCarriesEveryFigureAndParsesBack() throws {
        let text = OSUFormat.json(sample())
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(object["test"] as? String, "allreduce")
        XCTAssertEqual(object["library"] as? String, "MyriXen MPI 0.1")
        XCTAssertEqual(object["ranks"] as? Int, 4)
        XCTAssertEqual(object["command"] as? [String], sample().commandLine, "quotes and line breaks escaped")
        let layout = try XCTUnwrap(object["layout"] as? [[String: Any]])
        XCTAssertEqual(layout.map { $0["host"] as? String }, ["vm1", "vm2"])
        let rows = try XCTUnwrap(object["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["size"] as? Int }, [4, 8])
        XCTAssertEqual(rows.map { $0["avg"] as? Double }, [1.5, 10.0001], "four decimals")
        XCTAssertEqual(rows.map { $0["max"] as? Double }, [2.125, 11])
        XCTAssertEqual(rows.map { $0["iterations"] as? Int }, [1000, 100])
        XCTAssertEqual(rows.map { $0["p99.9"] as? Double }, [2.1, 11])
        XCTAssertEqual(OSUFormat.jsonString("\u{1}\t\\"), "\"\\u0001\\t\\\\\"")
    }

    func testCSVRowsQuoteWhatNeedsIt() {
        let r = sample()
        XCTAssertEqual(OSUFormat.csvHeader, "test,size,avg_us,min_us,max_us,iterations,p50_us,p99_us,p99.9_us,ranks,hosts,library,host,command")
        XCTAssertEqual(OSUFormat.csvRow(r, r.rows[0]),
                       "allreduce,4,1.5000,1.2500,2.1250,1000,1.5000,2.0000,2.1000,4,2,MyriXen MPI 0.1,vm1,\"mpibench allreduce -m 4:8 --note=\"\"a, b\"\"\n\"")
        XCTAssertEqual(OSUFormat.csvField("plain"), "plain")
    }
}

/// Percentiles of every call of every rank, from histograms merged as mpibench merges them.
final class CallTimesTests: XCTestCase {
    func testPercentilesOfAKnownDistributionMergedFromTwoRanks() {
        // Rank A: 1,000 calls of 1..1000 µs; rank B: 1,000 calls of 1001..2000 µs.
        var a = CallTimes(), b = CallTimes()
        for k in 1...1000 { a.record(seconds: Double(k) * 1e-6); b.record(seconds: Double(1000 + k) * 1e-6) }
        var merged = CallTimes()
        merged.merge(pairs: a.pairs)
        merged.merge(pairs: b.pairs)
        XCTAssertEqual(merged.histogram.totalCount, 2000)
        let p = merged.percentiles
        // Three significant digits: within 0.1% of the exact ranks' values.
        XCTAssertEqual(p.p50, 1000, accuracy: 1)
        XCTAssertEqual(p.p99, 1980, accuracy: 2)
        XCTAssertEqual(p.p999, 1998, accuracy: 2)
        XCTAssertEqual(a.percentiles.p50, 500, accuracy: 0.5, "one rank alone")
    }

    func testTheFullRowAddsThePercentilesAfterOMBsColumns() throws {
        let step = try OSUPlan(.bcast, sizes: 8...8).steps[0]
        let row = OSUFormat.row(.bcast, step, average: 1.5, min: 1, max: 2, full: true, percentiles: (1.25, 3.5, 10.75))
        XCTAssertEqual(row, OSUFormat.printf("%-10d%18.2f%18.2f%18.2f%12d%18.2f%18.2f%18.2f", 8, 1.5, 1.0, 2.0, step.iterations, 1.25, 3.5, 10.75))
        let header = OSUFormat.preamble(.bcast, program: "mpibench", library: "L", ranks: 2, full: true).last!
        XCTAssertTrue(header.hasSuffix("Iterations   P50 Latency(us)   P99 Latency(us) P99.9 Latency(us)"), header)
    }
}
