@testable import MPI

/// gather(v), scatter(v), allgather(v), alltoall(v).
func gatheringSuite(_ h: Harness) throws {
    for comm in h.communicators {
        let p = comm.size, me = comm.rank
        try h.forEachAlgorithm(.allgather) { alg in
            for n in h.counts(UInt16.self) {
                let mine = (0..<n).map { UInt16(truncatingIfNeeded: contribution(rank: me, index: $0)) }
                let all = try comm.allgather(mine)
                for r in 0..<p {
                    h.expectEqual(all[r], (0..<n).map { UInt16(truncatingIfNeeded: contribution(rank: r, index: $0)) }, "allgather \(alg) count \(n), block of rank \(r)")
                }
            }
            // Blocks of different sizes: rank r brings r + 1 elements.
            let v = try comm.allgatherv([Int](repeating: me, count: me + 1))
            for r in 0..<p { h.expectEqual(v[r], [Int](repeating: r, count: r + 1), "allgatherv \(alg) block of rank \(r)") }
        }
    }
}
