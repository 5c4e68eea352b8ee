// The OSU Micro-Benchmarks 7.x collective latency method, the parts that do not talk MPI: which
// tests there are, which sizes each runs with how many iterations, how reduce_scatter splits its
// data, and the output layout. mpibench (the Swift MPI library) uses it; bin/ref/osu_coll.c is the
// same method in C against MPICH and Open MPI, and its comment describes the method in full.
#if canImport(Glibc)
import Glibc
#endif
import Histogram

/// One of OMB's blocking collective latency tests.
public enum CollectiveTest: String, CaseIterable, Sendable {
    case allreduce, bcast, reduce, allgather, alltoall, gather, scatter
    case reduceScatter = "reduce_scatter"
    case barrier
    case gatherv, scatterv, allgatherv, alltoallv, scan

    /// OMB's benchmark title, after "OSU MPI ".
    public var title: String {
        switch self {
        case .allreduce: "Allreduce Latency Test"
        case .bcast: "Broadcast Latency Test"
        case .reduce: "Reduce Latency Test"
        case .allgather: "Allgather Latency Test"
        case .alltoall: "All-to-All Personalized Exchange Latency Test"
        case .gather: "Gather Latency Test"
        case .scatter: "Scatter Latency Test"
        case .reduceScatter: "Reduce_scatter Latency Test"
        case .barrier: "Barrier Latency Test"
        case .gatherv: "Gatherv Latency Test"
        case .scatterv: "Scatterv Latency Test"
        case .allgatherv: "Allgatherv Latency Test"
        case .alltoallv: "All-to-Allv Personalized Exchange Latency Test"
        case .scan: "Scan Latency Test"
        }
    }

    /// Reductions sum Floats (MPI_FLOAT); the others move bytes (MPI_CHAR).
    public var isReduction: Bool { self == .allreduce || self == .reduce || self == .reduceScatter || self == .scan }
    /// Each rank's block of `count` elements goes to or comes from every rank (the buffer on
    /// one side holds a block per rank).
    public var sendsBlockPerRank: Bool { self == .alltoall || self == .scatter || self == .alltoallv || self == .scatterv }
    public var receivesBlockPerRank: Bool {
        self == .alltoall || self == .allgather || self == .gather || self == .alltoallv || self == .allgatherv || self == .gatherv
    }
    /// Bytes per element.
    public var elementSize: Int { isReduction ? MemoryLayout<Float>.size : 1 }
    public var datatypeName: String { isReduction ? "MPI_FLOAT" : "MPI_CHAR" }
    /// Whether rows carry a message size (barrier's single row does not).
    public var hasSizes: Bool { self != .barrier }
}

/// A bad command line, in words that name the problem and the fix.
public struct OSUOptionError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What one test runs: sizes, and per size the element count and the iterations.
public struct OSUPlan: Equatable, Sendable {
    /// One row: `size` bytes, `count` elements, `warmup` untimed and `iterations` timed calls.
    public struct Step: Equatable, Sendable {
        public let size: Int, count: Int, iterations: Int, warmup: Int
        public init(size: Int, count: Int, iterations: Int, warmup: Int) {
            self.size = size; self.count = count; self.iterations = iterations; self.warmup = warmup
        }
    }

    /// OMB's counts: 1000 timed after 100 warm-up up to `largeMessage` bytes, 100 after 10 above.
    public static let largeMessage = 8192
    public static let defaultRange = 1...(1 << 20)
    public static let largestSize = 1 << 30

    public let test: CollectiveTest
    public let steps: [Step]

    /// Sizes double from `range`'s lower bound while they fit; a size too small for one element
    /// is skipped (reductions start at 4 B); barrier runs once, with size 0. `iterations` and
    /// `warmup`, when given, replace both the small and the large counts (as OMB's -i and -x do).
    public init(_ test: CollectiveTest, sizes range: ClosedRange<Int> = OSUPlan.defaultRange,
                iterations: Int? = nil, warmup: Int? = nil) throws(OSUOptionError) {
        guard range.lowerBound >= 1, range.upperBound <= OSUPlan.largestSize else {
            throw OSUPlan.rangeError("\(range.lowerBound):\(range.upperBound)")
        }
        if let i = iterations, i < 1 { throw OSUOptionError("-i must be at least 1, not \(i)") }
        if let x = warmup, x < 0 { throw OSUOptionError("-x must be at least 0, not \(x)") }
        func step(_ size: Int) -> Step {
            let large = size > OSUPlan.largeMessage
            return Step(size: size, count: size / test.elementSize,
                        iterations: iterations ?? (large ? 100 : 1000), warmup: warmup ?? (large ? 10 : 100))
        }
        self.test = test
        guard test.hasSizes else { steps = [step(0)]; return }
        var sizes: [Step] = []
        var size = range.lowerBound
        while size <= range.upperBound {
            if size >= test.elementSize { sizes.append(step(size)) }
            size *= 2
        }
        guard !sizes.isEmpty else {
            throw OSUOptionError("-m \(range.lowerBound):\(range.upperBound): \(test.rawValue) sums floats, and no size from MIN to MAX doubling is 4 B or more (try -m 4:MAX with MAX >= 4)")
        }
        steps = sizes
    }

    /// "-m [MIN:]MAX": MAX alone keeps the default MIN (1).
    public static func parseSizes(_ text: String) throws(OSUOptionError) -> ClosedRange<Int> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        let numbers = parts.compactMap { Int($0) }
        guard (1...2).contains(parts.count), numbers.count == parts.count else {
            throw OSUOptionError("-m must be [MIN:]MAX, e.g. -m 4:1048576, not '\(text)'")
        }
        let lo = numbers.count == 2 ? numbers[0] : defaultRange.lowerBound, hi = numbers.last!
        guard lo >= 1, lo <= hi, hi <= largestSize else { throw rangeError(text) }
        return lo...hi
    }

    static func rangeError(_ sizes: String) -> OSUOptionError {
        OSUOptionError("-m must be [MIN:]MAX with 1 <= MIN <= MAX <= \(largestSize) (1 GiB), not '\(sizes)'")
    }

    /// How OMB's osu_reduce_scatter splits `count` elements over `ranks`: `count / ranks` each,
    /// one more for the first `count % ranks`; with fewer elements than ranks, one each for the
    /// first `count` ranks.
    public static func reduceScatterCounts(_ count: Int, ranks: Int) -> [Int] {
        (0..<ranks).map { r in count < ranks ? (r < count ? 1 : 0) : count / ranks + (r < count % ranks ? 1 : 0) }
    }
}

/// OMB 7.x's output: a blank line, a title, the datatype, the column header, one row per size.
public enum OSUFormat {
    /// printf, for OMB's exact field formats ("%-10d%18.2f").
    public static func printf(_ format: String, _ arguments: CVarArg...) -> String {
        withVaList(arguments) { list in
            var buffer = [CChar](repeating: 0, count: 256)
            let n = Int(vsnprintf(&buffer, buffer.count, format, list))
            precondition(n >= 0 && n < buffer.count, "OSUFormat.printf: '\(format)' makes more than \(buffer.count - 1) characters")
            return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// printf's "%*s" for a header's text (String is no CVarArg here): right-aligned in `width`
    /// characters, left-aligned for a negative width.
    public static func field(_ text: String, _ width: Int) -> String {
        let padding = String(repeating: " ", count: Swift.max(0, abs(width) - text.count))
        return width < 0 ? text + padding : padding + text
    }

    /// The lines before the first row. `program` and `library` name what ran (OMB prints its own
    /// version there): "# OSU 7.x method, mpibench: Allreduce Latency Test (MyriXen MPI 0.1, 2 ranks)".
    public static func preamble(_ test: CollectiveTest, program: String, library: String, ranks: Int, full: Bool) -> [String] {
        var lines = ["", "# OSU 7.x method, \(program): \(test.title) (\(library), \(ranks) ranks)"]
        if test.hasSizes { lines.append("# Datatype: \(test.datatypeName).") }
        var header = test.hasSizes ? field("# Size", -10) + field("Avg Latency(us)", 18) : "# Avg Latency(us)"
        if full {
            header += field("Min Latency(us)", 18) + field("Max Latency(us)", 18) + field("Iterations", 12)
                + field("P50 Latency(us)", 18) + field("P99 Latency(us)", 18) + field("P99.9 Latency(us)", 18)
        }
        lines.append(header)
        return lines
    }

    /// A row: the average over ranks of each rank's mean latency, with `full` also the lowest
    /// and highest rank's, the timed iterations, and beyond OMB the percentiles of every call
    /// of every rank (after OMB's columns, so what parses OMB's rows parses these).
    public static func row(_ test: CollectiveTest, _ step: OSUPlan.Step, average: Double, min: Double, max: Double, full: Bool,
                           percentiles: (p50: Double, p99: Double, p999: Double)? = nil) -> String {
        var line = test.hasSizes ? printf("%-10ld%18.2f", step.size, average) : printf("%17.2f", average)
        if full {
            line += printf("%18.2f%18.2f%12ld", min, max, step.iterations)
            if let p = percentiles { line += printf("%18.2f%18.2f%18.2f", p.p50, p.p99, p.p999) }
        }
        return line
    }
}

/// How mpibench writes its results: OSU's text layout, or for machines JSON or CSV (every
/// figure of every size, with what ran, where and how).
public enum OSUOutputFormat: String, CaseIterable, Sendable { case osu, json, csv }

/// What a run was: the test, the program and library, the command line, the host it was
/// started from and the ranks on each host, and a row per size.
public struct OSURun: Equatable, Sendable {
    public struct Row: Equatable, Sendable {
        public let size: Int, average: Double, min: Double, max: Double, iterations: Int
        /// Of every timed call of every rank, in µs.
        public let p50: Double, p99: Double, p999: Double
        public init(size: Int, average: Double, min: Double, max: Double, iterations: Int, p50: Double, p99: Double, p999: Double) {
            self.size = size; self.average = average; self.min = min; self.max = max; self.iterations = iterations
            self.p50 = p50; self.p99 = p99; self.p999 = p999
        }
    }
    public let test: CollectiveTest
    public let program: String, library: String
    public let commandLine: [String]
    public let host: String
    /// The rank layout: each host and how many ranks ran there, in rank order of first appearance.
    public let layout: [(host: String, ranks: Int)]
    public var rows: [Row] = []

    public init(test: CollectiveTest, program: String, library: String, commandLine: [String], host: String, hostOfRank: [String]) {
        self.test = test; self.program = program; self.library = library; self.commandLine = commandLine; self.host = host
        var layout: [(host: String, ranks: Int)] = []
        for h in hostOfRank {
            if let i = layout.firstIndex(where: { $0.host == h }) { layout[i].ranks += 1 } else { layout.append((h, 1)) }
        }
        self.layout = layout
    }

    public var ranks: Int { layout.reduce(0) { $0 + $1.ranks } }

    public static func == (a: OSURun, b: OSURun) -> Bool {
        a.test == b.test && a.program == b.program && a.library == b.library && a.commandLine == b.commandLine
            && a.host == b.host && a.rows == b.rows && a.layout.elementsEqual(b.layout) { $0.host == $1.host && $0.ranks == $1.ranks }
    }
}

extension OSUFormat {
    /// `s` as a JSON string literal.
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 { out += printf("\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    /// Microseconds as JSON and CSV carry them: two decimals more than the text's.
    static func micros(_ v: Double) -> String { printf("%.4f", v) }

    /// The whole run as one JSON object (printed once the last size is measured).
    public static func json(_ run: OSURun) -> String {
        var s = "{\n"
        s += "  \"program\": \(jsonString(run.program)),\n"
        s += "  \"library\": \(jsonString(run.library)),\n"
        s += "  \"test\": \(jsonString(run.test.rawValue)),\n"
        s += "  \"title\": \(jsonString(run.test.title)),\n"
        s += "  \"command\": [\(run.commandLine.map(jsonString).joined(separator: ", "))],\n"
        s += "  \"host\": \(jsonString(run.host)),\n"
        s += "  \"ranks\": \(run.ranks),\n"
        s += "  \"layout\": [\(run.layout.map { "{\"host\": \(jsonString($0.host)), \"ranks\": \($0.ranks)}" }.joined(separator: ", "))],\n"
        s += "  \"unit\": \"us\",\n"
        s += "  \"rows\": [\n"
        s += run.rows.map { r in
            "    {\"size\": \(r.size), \"avg\": \(micros(r.average)), \"min\": \(micros(r.min)), \"max\": \(micros(r.max)), \"iterations\": \(r.iterations), "
                + "\"p50\": \(micros(r.p50)), \"p99\": \(micros(r.p99)), \"p99.9\": \(micros(r.p999))}"
        }.joined(separator: ",\n")
        s += run.rows.isEmpty ? "  ]\n}" : "\n  ]\n}"
        return s
    }

    /// The CSV header: a row per size, each with what ran (RFC 4180: fields with commas,
    /// quotes or line breaks are quoted).
    public static let csvHeader = "test,size,avg_us,min_us,max_us,iterations,p50_us,p99_us,p99.9_us,ranks,hosts,library,host,command"

    public static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.map { $0 == "\"" ? "\"\"" : String($0) }.joined() + "\""
    }

    public static func csvRow(_ run: OSURun, _ r: OSURun.Row) -> String {
        [run.test.rawValue, String(r.size), micros(r.average), micros(r.min), micros(r.max), String(r.iterations),
         micros(r.p50), micros(r.p99), micros(r.p999), String(run.ranks), String(run.layout.count), run.library, run.host, run.commandLine.joined(separator: " ")]
            .map(csvField).joined(separator: ",")
    }
}

/// Every timed call's latency, for percentiles: a histogram of nanoseconds (three significant
/// digits, up to an hour a call), merged across ranks at rank 0 from each rank's recorded
/// values, sent as (value, count) pairs.
public struct CallTimes {
    public private(set) var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000,
                                                            numberOfSignificantValueDigits: .three)
    public init() {}

    /// One call of `seconds`.
    @inline(__always) public mutating func record(seconds: Double) {
        _ = histogram.record(UInt64(Swift.max(1, Swift.min(3.6e12, (seconds * 1e9).rounded()))))
    }

    /// This rank's values as (value, count) pairs, flat: what rank 0 merges.
    public var pairs: [UInt64] {
        var out: [UInt64] = []
        for v in histogram.recordedValues() {
            out.append(v.value)
            out.append(UInt64(v.count))
        }
        return out
    }

    /// Adds another rank's `pairs`.
    public mutating func merge(pairs: [UInt64]) {
        var k = 0
        while k + 1 < pairs.count {
            _ = histogram.record(pairs[k], count: pairs[k + 1])
            k += 2
        }
    }

    /// p50, p99 and p99.9 in microseconds.
    public var percentiles: (p50: Double, p99: Double, p999: Double) {
        func us(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1e3 }
        return (us(50), us(99), us(99.9))
    }
}
