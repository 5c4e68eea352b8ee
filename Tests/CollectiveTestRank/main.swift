// A rank of the collective tests: every operation with every algorithm forced in turn, many
// counts, element types and operations, roots and communicators, each rank checking what it
// got against a sequential reference it computes itself. One job covers a whole rank count.
//
//   CollectiveTestRank [SUITE...] [--large]   suites: all (default), or any of Harness.suites' names
//
// Prints "rank R: ok N checks" at the end; on the first wrong result prints "FAILED: ..."
// naming the operation, algorithm, count and what differed, and exits 3.
#if canImport(Glibc)
import Glibc
#endif
@_spi(Testing) import MPI

let arguments = Array(CommandLine.arguments.dropFirst())
let large = arguments.contains("--large")
let chosen = arguments.filter { !$0.hasPrefix("--") }
let everySuite = Harness.suites + Harness.namedOnly
for name in chosen where name != "all" && !everySuite.contains(where: { $0.0 == name }) {
    let line = "CollectiveTestRank: no suite \(name); suites: all \(everySuite.map(\.0).joined(separator: " "))\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}
let mpi: MPIEnvironment
do { mpi = try MPI.initialize() } catch {
    let line = "CollectiveTestRank: \(error)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}
let h = Harness(world: mpi.world, large: large)
for (name, suite) in Harness.suites where chosen.isEmpty || chosen.contains("all") || chosen.contains(name) {
    h.suite = name
    try suite(h)
}
for (name, suite) in Harness.namedOnly where chosen.contains(name) {
    h.suite = name
    try suite(h)
}
try mpi.world.barrier()
h.report()
mpi.finalize()
