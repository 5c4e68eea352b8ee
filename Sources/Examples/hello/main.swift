// hello: every rank says who and where it is.
import MPI

let mpi = try MPI.initialize()
let world = mpi.world
print("hello from rank \(world.rank) of \(world.size) on \(mpi.processorName)")
mpi.finalize()
