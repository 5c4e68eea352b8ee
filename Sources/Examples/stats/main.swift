// stats: rank 0 makes a data set (or takes its size from the command line), scatters it over
// the ranks (scatter: chunks of different sizes when it does not divide evenly), every rank
// computes the moments of its chunk (count, sum, sum of squares about a shift), they are
// allreduced, and every rank derives the mean and variance of the whole set. Rank 0 checks
// them against a serial computation over the data it made and prints both.
#if canImport(Glibc)
import Glibc
#endif
import MPI

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 100_000 : 100_000

/// A deterministic data set: a noisy sine around 10.
func dataSet(_ n: Int) -> [Double] {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<n).map { i in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return 10 + sin(Double(i) / 100) + Double(state >> 11) / Double(1 << 53) - 0.5
    }
}

let data = world.rank == 0 ? dataSet(count) : []
var chunks: [[Double]] = []
if world.rank == 0 {
    let p = world.size
    chunks = (0..<p).map { r in Array(data[(r * count / p)..<((r + 1) * count / p)]) }
}
let mine = try world.scatter(chunks, root: 0)

// Moments about a shift everyone knows (the first element, broadcast), for accuracy.
let shift = try world.bcast(world.rank == 0 && !data.isEmpty ? data[0] : 0, root: 0)
var local: [Double] = [Double(mine.count), 0, 0]
for x in mine {
    local[1] += x - shift
    local[2] += (x - shift) * (x - shift)
}
let total = try world.allreduce(local, .sum)
let n = total[0]
let mean = shift + total[1] / n
let variance = (total[2] - total[1] * total[1] / n) / (n - 1)

if world.rank == 0 {
    let serialMean = data.reduce(0, +) / Double(count)
    let serialVariance = data.reduce(0) { $0 + ($1 - serialMean) * ($1 - serialMean) } / Double(count - 1)
    let ok = abs(mean - serialMean) < 1e-9 * abs(serialMean) && abs(variance - serialVariance) < 1e-9 * serialVariance
    print("stats: \(count) values on \(world.size) ranks: mean \(mean), variance \(variance); serial \(serialMean), \(serialVariance) \(ok ? "ok" : "WRONG")")
}
