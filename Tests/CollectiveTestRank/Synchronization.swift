@testable import MPI

/// Barrier and broadcast.
func synchronizationSuite(_ h: Harness) throws {
    for comm in h.communicators {
        let p = comm.size, me = comm.rank
        try h.forEachAlgorithm(.barrier) { alg in
            // Nobody leaves before the last one came: the last rank comes 2 ms late (every
            // rank of a job reads one clock, the kernel's monotonic one, also across the
            // emulated VMs), and every leaving time is after every coming time.
            if me == p - 1 {
                let until = MPIEnvironment.wtime() + 0.002
                while MPIEnvironment.wtime() < until {}
            }
            let came = MPIEnvironment.wtime()
            try comm.barrier()
            let left = MPIEnvironment.wtime()
            let times = try comm.allgather([came, left])
            let lastCame = times.map { $0[0] }.max()!, firstLeft = times.map { $0[1] }.min()!
            h.expect(firstLeft >= lastCame, "barrier \(alg): a rank left at \(firstLeft) before the last came at \(lastCame)")
        }
        try h.forEachAlgorithm(.bcast) { alg in
            for root in Set([0, p - 1, p / 2]).sorted() {
                for n in h.counts(Int32.self) {
                    var buffer = me == root ? (0..<n).map { Int32(contribution(rank: root, index: $0)) } : [Int32](repeating: -1, count: n)
                    try comm.bcast(&buffer, root: root)
                    h.expectEqual(buffer, (0..<n).map { Int32(contribution(rank: root, index: $0)) }, "bcast \(alg) root \(root) count \(n)")
                }
                let v = try comm.bcast(me == root ? 3.25 * Double(root + 1) : 0, root: root)
                h.expect(v == 3.25 * Double(root + 1), "bcast \(alg) of one value from \(root): \(v)")
            }
        }
        // The object path.
        let words = try comm.bcast(me == 0 ? ["a": [1, 2], "b": [3]] : [:], root: 0)
        h.expect(words == ["a": [1, 2], "b": [3]], "bcast of a Codable dictionary: \(words)")
        h.expectError(.root, "bcast from a root outside the communicator") { _ = try comm.bcast(1, root: p) }
    }
}
