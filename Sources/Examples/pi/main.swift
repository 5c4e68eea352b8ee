// pi: the classic integration of 4/(1+x^2) over [0,1], split over the ranks. Rank 0 reads
// the number of intervals and broadcasts it (bcast); the partial sums are reduced to rank 0
// (reduce), which prints the estimate.
import MPI

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
let asked = world.rank == 0 && CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 10_000_000 : 10_000_000
let intervals = try world.bcast(asked, root: 0)
let h = 1.0 / Double(intervals)
var partial = 0.0
var i = world.rank
while i < intervals {
    let x = h * (Double(i) + 0.5)
    partial += 4.0 / (1.0 + x * x)
    i += world.size
}
partial *= h
if let pi = try world.reduce(partial, .sum, root: 0) {
    let error = abs(pi - Double.pi)
    print("pi is approximately \(String(pi.description.prefix(12))), error \(error) (\(intervals) intervals, \(world.size) ranks)")
}
