// ring: a token goes around every rank; each adds its rank; rank 0 checks the sum.
import MPI

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
let next = (world.rank + 1) % world.size
let previous = (world.rank + world.size - 1) % world.size
if world.rank == 0 {
    try world.send(0, to: next, tag: 7)
    let (token, status) = try world.receive(Int.self, from: .rank(previous), tag: 7)
    let expected = world.size * (world.size - 1) / 2
    print("ring of \(world.size): token \(token[0]) came back from rank \(status.source) \(token[0] == expected ? "ok" : "WRONG (expected \(expected))")")
} else {
    let (token, _) = try world.receive(Int.self, from: .rank(previous), tag: 7)
    try world.send(token[0] + world.rank, to: next, tag: 7)
}
