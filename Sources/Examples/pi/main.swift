// pi: the classic integration of 4/(1+x^2) over [0,1], split over the ranks; the partial
// sums meet at rank 0 (point-to-point; collectives come later), which prints the estimate.
import MPI

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
let intervals = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 10_000_000 : 10_000_000
let h = 1.0 / Double(intervals)
var partial = 0.0
var i = world.rank
while i < intervals {
    let x = h * (Double(i) + 0.5)
    partial += 4.0 / (1.0 + x * x)
    i += world.size
}
partial *= h
if world.rank == 0 {
    var pi = partial
    for _ in 1..<world.size { pi += try world.receive(Double.self, from: .any, tag: 1).0[0] }
    let error = abs(pi - Double.pi)
    print("pi is approximately \(String(pi.description.prefix(12))), error \(error) (\(intervals) intervals, \(world.size) ranks)")
} else {
    try world.send(partial, to: 0, tag: 1)
}
