// mpibench: the OSU Micro-Benchmarks 7.x collective latency tests through the Swift MPI library,
// run under swiftrun, mpiexec.hydra or srun:
//   swiftrun -n 4 mpibench TEST [-m [MIN:]MAX] [-i ITERS] [-x WARMUP] [-f] [-c] [--format osu|json|csv]
// Same method, options and output as bin/ref/osu_coll.c (its comment has the method in full), so
// bin/bench-collectives can set the two side by side; OSUMethod holds the sizes, counts and the
// output layout. Every call is timed alone, then a barrier; each rank's mean is reduced to rank 0
// with min, max and sum, and a row shows the mean over ranks (-f: also min, max, iterations).
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import MPI
import OSUMethod

struct MPIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpibench",
        abstract: "OSU-style collective latency tests on the Swift MPI library (run under swiftrun).",
        discussion: """
            Sizes double from MIN to MAX bytes; reductions (allreduce, reduce, reduce_scatter, scan) sum \
            Floats, so they start at 4 B. Defaults: 1000 timed calls after 100 warm-up up to 8 KiB, \
            100 after 10 above; -i and -x set both. Roots are rank 0. Output: the OSU 7.x layout.
            """)

    @Argument(help: "The test: \(CollectiveTest.allCases.map(\.rawValue).joined(separator: ", ")).")
    var test: String

    @Option(name: [.customShort("m"), .customLong("message-size")], help: ArgumentHelp("Sizes in bytes, [MIN:]MAX.", valueName: "min:max"))
    var sizes = "\(OSUPlan.defaultRange.lowerBound):\(OSUPlan.defaultRange.upperBound)"

    @Option(name: [.customShort("i"), .customLong("iterations")], help: "Timed calls per size (small and large sizes alike).")
    var iterations: Int?

    @Option(name: [.customShort("x"), .customLong("warmup")], help: "Untimed calls before them (small and large sizes alike).")
    var warmup: Int?

    @Flag(name: [.customShort("f"), .customLong("full")], help: "Also the lowest and highest rank's mean, the iterations, and p50, p99 and p99.9 of every call of every rank.")
    var full = false

    @Flag(name: [.customShort("c"), .customLong("validation")], help: "Check every byte each call delivers (outside the timed part); a wrong one ends the run naming the rank, size, call and offset.")
    var validation = false

    @Option(name: .customLong("format"), help: ArgumentHelp("osu (OSU's text), json (one object at the end) or csv (a row per size as it completes): json and csv carry every figure, the command line, the host and the ranks on each host.", valueName: "format"))
    var format = "osu"

    func outputFormat() throws(OSUOptionError) -> OSUOutputFormat {
        guard let f = OSUOutputFormat(rawValue: format) else {
            throw OSUOptionError("unknown format '\(format)'; the formats are \(OSUOutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return f
    }

    func plan() throws(OSUOptionError) -> OSUPlan {
        guard let t = CollectiveTest(rawValue: test) else {
            throw OSUOptionError("unknown test '\(test)'; the tests are \(CollectiveTest.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return try OSUPlan(t, sizes: try OSUPlan.parseSizes(sizes), iterations: iterations, warmup: warmup)
    }

    func validate() throws {
        do { _ = try plan(); _ = try outputFormat() } catch { throw ValidationError(error.description) }
    }
}

/// One size's collective, on buffers prepared for it.
enum Call {
    case allreduce(UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>)
    case reduce(UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>)
    case reduceScatterBlock(UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>)
    case reduceScatter(UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>, counts: [Int])
    case bcast(UnsafeMutableBufferPointer<UInt8>)
    case allgather(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>)
    case alltoall(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>)
    case gather(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>)
    case scatter(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>)
    case barrier
    /// The v-variants as OMB runs them: every rank's count the same, blocks back to back.
    case gatherv(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>, counts: [Int], displacements: [Int])
    case scatterv(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>, counts: [Int], displacements: [Int])
    case allgatherv(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>, counts: [Int], displacements: [Int])
    case alltoallv(UnsafeBufferPointer<UInt8>, UnsafeMutableBufferPointer<UInt8>, counts: [Int], displacements: [Int])
    case scan(UnsafeBufferPointer<Float>, UnsafeMutableBufferPointer<Float>)
}

/// The test on this rank: its buffers (sized for the largest step), the timing loop, the statistics.
struct Bench {
    let world: Communicator
    let plan: OSUPlan
    /// -c: fill the send buffers before every call and check what it delivered after it.
    var validation = false
    /// Test hook (`MPIBENCH_CORRUPT=RANK:SIZE:OFFSET`): that rank flips the byte at OFFSET of
    /// what it received at SIZE before checking it, so a test can see a wrong byte caught.
    var corrupt: (rank: Int, size: Int, offset: Int)?
    let send: UnsafeMutableRawBufferPointer, recv: UnsafeMutableRawBufferPointer
    let stats = UnsafeMutableBufferPointer<Double>.allocate(capacity: 4) // this rank's, min, max, sum
    let sum = Operation<Float>.sum

    /// Fails with the bytes it could not get.
    init(world: Communicator, plan: OSUPlan) throws(OSUOptionError) {
        self.world = world
        self.plan = plan
        let test = plan.test, ranks = world.size
        let block = Swift.max(plan.steps.last!.size, MemoryLayout<Float>.size)
        let sendBytes = test.sendsBlockPerRank ? block * ranks : block
        let recvBytes = test.receivesBlockPerRank ? block * ranks : block
        func allocate(_ bytes: Int) throws(OSUOptionError) -> UnsafeMutableRawBufferPointer {
            var p: UnsafeMutableRawPointer?
            guard posix_memalign(&p, 4096, bytes) == 0, let p else {
                throw OSUOptionError("rank \(world.rank) cannot allocate \(bytes) bytes (lower -m MAX)")
            }
            return UnsafeMutableRawBufferPointer(start: p, count: bytes)
        }
        send = try allocate(sendBytes)
        recv = try allocate(recvBytes)
        if test.isReduction {
            send.initializeMemory(as: Float.self, repeating: 1)
            recv.initializeMemory(as: Float.self, repeating: 0)
        } else {
            send.initializeMemory(as: UInt8.self, repeating: 1)
            recv.initializeMemory(as: UInt8.self, repeating: 0)
        }
        stats.initialize(repeating: 0)
    }

    func floats(_ b: UnsafeMutableRawBufferPointer, _ n: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: b.baseAddress!.assumingMemoryBound(to: Float.self), count: n)
    }
    func bytes(_ b: UnsafeMutableRawBufferPointer, _ n: Int) -> UnsafeMutableBufferPointer<UInt8> {
        UnsafeMutableBufferPointer(start: b.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n)
    }

    func prepare(_ step: OSUPlan.Step) -> Call {
        let c = step.count, n = world.size
        switch plan.test {
        case .allreduce: return .allreduce(UnsafeBufferPointer(floats(send, c)), floats(recv, c))
        case .reduce: return .reduce(UnsafeBufferPointer(floats(send, c)), floats(recv, c))
        case .reduceScatter:
            let counts = OSUPlan.reduceScatterCounts(c, ranks: n)
            if counts.allSatisfy({ $0 == counts[0] }) {
                return .reduceScatterBlock(UnsafeBufferPointer(floats(send, c)), floats(recv, counts[0]))
            }
            return .reduceScatter(UnsafeBufferPointer(floats(send, c)), floats(recv, counts[world.rank]), counts: counts)
        case .bcast: return .bcast(bytes(send, c))
        case .allgather: return .allgather(UnsafeBufferPointer(bytes(send, c)), bytes(recv, c * n))
        case .alltoall: return .alltoall(UnsafeBufferPointer(bytes(send, c * n)), bytes(recv, c * n))
        case .gather: return .gather(UnsafeBufferPointer(bytes(send, c)), bytes(recv, c * n))
        case .scatter: return .scatter(UnsafeBufferPointer(bytes(send, c * n)), bytes(recv, c))
        case .barrier: return .barrier
        case .gatherv, .scatterv, .allgatherv, .alltoallv:
            let counts = [Int](repeating: c, count: n), displacements = (0..<n).map { $0 * c }
            switch plan.test {
            case .gatherv: return .gatherv(UnsafeBufferPointer(bytes(send, c)), bytes(recv, c * n), counts: counts, displacements: displacements)
            case .scatterv: return .scatterv(UnsafeBufferPointer(bytes(send, c * n)), bytes(recv, c), counts: counts, displacements: displacements)
            case .allgatherv: return .allgatherv(UnsafeBufferPointer(bytes(send, c)), bytes(recv, c * n), counts: counts, displacements: displacements)
            default: return .alltoallv(UnsafeBufferPointer(bytes(send, c * n)), bytes(recv, c * n), counts: counts, displacements: displacements)
            }
        case .scan: return .scan(UnsafeBufferPointer(floats(send, c)), floats(recv, c))
        }
    }

    @inline(__always) func call(_ c: Call) throws(MPIError) {
        switch c {
        case let .allreduce(i, o): try world.allreduce(i, into: o, sum)
        case let .reduce(i, o): try world.reduce(i, into: o, sum, root: 0)
        case let .reduceScatterBlock(i, o): try world.reduceScatterBlock(i, into: o, sum)
        case let .reduceScatter(i, o, counts): try world.reduceScatter(i, into: o, counts: counts, sum)
        case let .bcast(b): try world.bcast(b, root: 0)
        case let .allgather(i, o): try world.allgather(i, into: o)
        case let .alltoall(i, o): try world.alltoall(i, into: o)
        case let .gather(i, o): try world.gather(i, into: o, root: 0)
        case let .scatter(i, o): try world.scatter(i, into: o, root: 0)
        case .barrier: try world.barrier()
        case let .gatherv(i, o, counts, d): try world.gatherv(i, into: o, counts: counts, displacements: d, root: 0)
        case let .scatterv(i, o, counts, d): try world.scatterv(i, counts: counts, displacements: d, into: o, root: 0)
        case let .allgatherv(i, o, counts, d): try world.allgatherv(i, into: o, counts: counts, displacements: d)
        case let .alltoallv(i, o, counts, d):
            try world.alltoallv(i, sendCounts: counts, sendDisplacements: d, into: o, receiveCounts: counts, receiveDisplacements: d)
        case let .scan(i, o): try world.scan(i, into: o, sum)
        }
    }

    // MARK: -c

    /// Byte `k` of rank `r`'s send data in call `i`.
    @inline(__always) static func pattern(_ r: Int, _ i: Int, _ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: r &* 31 &+ i &* 7 &+ k) }
    /// Element `k` of rank `r`'s floats: small integers, so every sum is exact.
    @inline(__always) static func value(_ r: Int, _ k: Int) -> Float { Float(r + 1 + k % 3) }

    /// This rank's send data for call `i`, and a receive buffer of zeros.
    func fill(_ step: OSUPlan.Step, call i: Int) {
        let c = step.count, n = world.size, me = world.rank
        let sendCount = plan.test.sendsBlockPerRank ? c * n : c
        if plan.test.isReduction {
            let f = floats(send, sendCount)
            for k in 0..<sendCount { f[k] = Self.value(me, k) }
            recv.initializeMemory(as: Float.self, repeating: 0)
        } else {
            let b = bytes(send, sendCount)
            for k in 0..<sendCount { b[k] = Self.pattern(me, i, k) }
            recv.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// What call `i` should have delivered here, checked; nil when every byte is right, else
    /// where the first wrong one is.
    func check(_ step: OSUPlan.Step, call i: Int) -> String? {
        let c = step.count, n = world.size, me = world.rank
        if let h = corrupt, h.rank == me, h.size == step.size {
            let target = plan.test == .bcast ? send : recv
            if h.offset < target.count { target[h.offset] ^= 0xFF }
        }
        func bytesWrong(_ got: UnsafeMutableBufferPointer<UInt8>, _ expected: (Int) -> UInt8) -> String? {
            for k in 0..<got.count where got[k] != expected(k) {
                return "byte at offset \(k) is \(got[k]), expected \(expected(k))"
            }
            return nil
        }
        func floatsWrong(_ got: UnsafeMutableBufferPointer<Float>, _ expected: (Int) -> Float) -> String? {
            for k in 0..<got.count where got[k] != expected(k) {
                return "element \(k) (byte offset \(k * 4)) is \(got[k]), expected \(expected(k))"
            }
            return nil
        }
        let total = { (k: Int, ranks: Int) -> Float in (0..<ranks).reduce(Float(0)) { $0 + Self.value($1, k) } }
        switch plan.test {
        case .barrier: return nil
        case .bcast: return bytesWrong(bytes(send, c)) { Self.pattern(0, i, $0) }
        case .allgather, .allgatherv: return bytesWrong(bytes(recv, c * n)) { Self.pattern($0 / c, i, $0 % c) }
        case .gather, .gatherv: return me == 0 ? bytesWrong(bytes(recv, c * n)) { Self.pattern($0 / c, i, $0 % c) } : nil
        case .scatter, .scatterv: return bytesWrong(bytes(recv, c)) { Self.pattern(0, i, me * c + $0) }
        case .alltoall, .alltoallv: return bytesWrong(bytes(recv, c * n)) { Self.pattern($0 / c, i, me * c + $0 % c) }
        case .allreduce: return floatsWrong(floats(recv, c)) { total($0, n) }
        case .reduce: return me == 0 ? floatsWrong(floats(recv, c)) { total($0, n) } : nil
        case .scan: return floatsWrong(floats(recv, c)) { total($0, me + 1) }
        case .reduceScatter:
            let counts = OSUPlan.reduceScatterCounts(c, ranks: n)
            let first = counts[0..<me].reduce(0, +)
            return floatsWrong(floats(recv, counts[me])) { total(first + $0, n) }
        }
    }

    /// This rank's mean time of one call, in microseconds; every timed call goes into `times`.
    func latency(_ step: OSUPlan.Step, times: inout CallTimes) throws(MPIError) -> Double {
        let c = prepare(step)
        var total = 0.0
        try world.barrier()
        for i in 0..<(step.warmup + step.iterations) {
            if validation { fill(step, call: i) }
            let t0 = MPIEnvironment.wtime()
            try call(c)
            let dt = MPIEnvironment.wtime() - t0
            if i >= step.warmup {
                total += dt
                times.record(seconds: dt)
            }
            if validation, let wrong = check(step, call: i) {
                throw MPIError(.other, "rank \(world.rank), size \(step.size), call \(i): \(wrong)")
            }
            // osu_barrier times back-to-back barriers; every other test separates its calls.
            if plan.test != .barrier { try world.barrier() }
        }
        return total * 1e6 / Double(step.iterations)
    }

    /// Every step; rank 0 prints the preamble and a row per step as it completes (JSON: the
    /// whole run at the end).
    func run(library: String, full: Bool, format: OSUOutputFormat, processorName: String) throws(MPIError) {
        // Where every rank runs, for the machine-readable formats' rank layout.
        let hosts = format == .osu ? nil : try world.gather(processorName, root: 0)
        var result = OSURun(test: plan.test, program: "mpibench", library: library, commandLine: CommandLine.arguments,
                            host: hosts?.first ?? "", hostOfRank: hosts ?? [])
        if world.rank == 0 {
            switch format {
            case .osu: for line in OSUFormat.preamble(plan.test, program: "mpibench", library: library, ranks: world.size, full: full) { print(line) }
            case .csv: print(OSUFormat.csvHeader)
            case .json: break
            }
            fflush(nil)
        }
        let mine = UnsafeBufferPointer(rebasing: stats[0..<1])
        // Percentiles: -f's extra columns, and always in JSON and CSV.
        let percentiles = full || format != .osu
        for step in plan.steps {
            var times = CallTimes()
            stats[0] = try latency(step, times: &times)
            if percentiles, let others = try world.gatherv(times.pairs, root: 0) {
                var merged = CallTimes()
                for p in others { merged.merge(pairs: p) }
                times = merged
            }
            try world.reduce(mine, into: UnsafeMutableBufferPointer(rebasing: stats[1..<2]), .min, root: 0)
            try world.reduce(mine, into: UnsafeMutableBufferPointer(rebasing: stats[2..<3]), .max, root: 0)
            try world.reduce(mine, into: UnsafeMutableBufferPointer(rebasing: stats[3..<4]), .sum, root: 0)
            if world.rank == 0 {
                let p = times.percentiles
                let row = OSURun.Row(size: step.size, average: stats[3] / Double(world.size), min: stats[1], max: stats[2],
                                     iterations: step.iterations, p50: p.p50, p99: p.p99, p999: p.p999)
                switch format {
                case .osu: print(OSUFormat.row(plan.test, step, average: row.average, min: row.min, max: row.max, full: full,
                                               percentiles: full ? p : nil))
                case .csv: print(OSUFormat.csvRow(result, row))
                case .json: result.rows.append(row)
                }
                fflush(nil)
            }
        }
        if world.rank == 0 && format == .json { print(OSUFormat.json(result)) }
    }
}

func complain(_ s: String) {
    let line = "mpibench: \(s)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

let mpi: MPIEnvironment
do { mpi = try MPI.initialize() } catch {
    complain("MPI did not start: \(error)")
    exit(1)
}
let world = mpi.world
// The command line is read once MPI runs, so only rank 0 says what is wrong with it (or prints
// --help) and every rank ends with the same code.
let command: MPIBench, plan: OSUPlan, format: OSUOutputFormat
do {
    command = try MPIBench.parse(Array(CommandLine.arguments.dropFirst()))
    plan = try command.plan()
    format = try command.outputFormat()
} catch {
    let code = MPIBench.exitCode(for: error)
    if world.rank == 0 {
        let text = MPIBench.fullMessage(for: error)
        if code == .success { print(text) } else { complain(text) }
    }
    mpi.finalize()
    exit(code.rawValue)
}
guard world.size >= 2 else {
    if world.rank == 0 { complain("needs at least 2 ranks, got \(world.size) (swiftrun -n 2 mpibench ...)") }
    mpi.finalize()
    exit(2)
}
// "MyriXen MPI 0.1 (Swift, ...)" -> "MyriXen MPI 0.1", as osu_coll names its MPI.
let library = MPI.libraryVersion.firstRange(of: " (").map { String(MPI.libraryVersion[..<$0.lowerBound]) } ?? MPI.libraryVersion
let bench: Bench
do {
    var b = try Bench(world: world, plan: plan)
    b.validation = command.validation
    if let hook = getenv("MPIBENCH_CORRUPT").map({ String(cString: $0).split(separator: ":").compactMap { Int($0) } }), hook.count == 3 {
        b.corrupt = (hook[0], hook[1], hook[2])
    }
    bench = b
} catch {
    complain(error.description)
    mpi.abort(code: 2, message: "mpibench: \(error)")
}
do {
    try bench.run(library: library, full: command.full, format: format, processorName: mpi.processorName)
} catch {
    complain("rank \(world.rank): \(error)")
    mpi.abort(code: 1, message: "mpibench \(plan.test.rawValue): \(error)")
}
mpi.finalize()

