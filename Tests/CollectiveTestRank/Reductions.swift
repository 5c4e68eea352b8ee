@testable import MPI

/// reduce, allreduce, reduce_scatter(_block), scan, exscan.
func reductionSuite(_ h: Harness) throws {
    for comm in h.communicators {
        let p = comm.size, me = comm.rank
        try h.forEachAlgorithm(.allreduce) { alg in
            for n in h.counts(Float.self) {
                let mine = (0..<n).map { Float(contribution(rank: me, index: $0)) }
                let want = (0..<n).map { i in (0..<p).reduce(Float(0)) { $0 + Float(contribution(rank: $1, index: i)) } }
                h.expectEqual(try comm.allreduce(mine, .sum), want, "allreduce \(alg) sum of Float count \(n)")
                var inPlace = mine
                try comm.allreduce(inPlace: &inPlace, .sum)
                h.expectEqual(inPlace, want, "allreduce \(alg) in place count \(n)")
            }
            let top = try comm.allreduce(Int64(me * 10), .max)
            h.expect(top == Int64((p - 1) * 10), "allreduce \(alg) max of one value: \(top)")
        }
    }
}
