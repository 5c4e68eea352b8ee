import MPI
let mpi = try MPI.initialize()
let w = mpi.world
let args = CommandLine.arguments
let iters = 20000
for bytes in [8, 1024, 65536, 1 << 20] {
    let n = max(bytes / 4, 1)
    var a = [Float](repeating: 1, count: n), b = [Float](repeating: 0, count: n)
    let it = bytes > 8192 ? 200 : iters
    var best = Double.infinity
    for _ in 0..<3 {
        try w.barrier()
        let t0 = MPIEnvironment.wtime()
        for _ in 0..<it {
            try a.withUnsafeBufferPointer { i in try b.withUnsafeMutableBufferPointer { o in try w.allreduce(i, into: o, .sum) } }
        }
        let t = (MPIEnvironment.wtime() - t0) / Double(it) * 1e6
        best = min(best, t)
    }
    var bb = [UInt8](repeating: 0, count: bytes)
    var bestB = Double.infinity
    for _ in 0..<3 {
        try w.barrier()
        let t0 = MPIEnvironment.wtime()
        for _ in 0..<it { try bb.withUnsafeMutableBufferPointer { try w.bcast($0, root: 0) } }
        bestB = min(bestB, (MPIEnvironment.wtime() - t0) / Double(it) * 1e6)
    }
    if w.rank == 0 { print("size \(bytes): allreduce \(best) us, bcast \(bestB) us") }
}
mpi.finalize()
