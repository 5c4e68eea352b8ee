@testable import MPI

/// Barrier and broadcast.
func synchronizationSuite(_ h: Harness) throws {
    for comm in h.communicators {
        let p = comm.size, me = comm.rank
        try h.forEachAlgorithm(.barrier) { alg in
            // After a barrier every member has sent what it sent before it: a message sent
            // before the barrier is there to probe right after.
            let right = (me + 1) % p
            if p > 1 { try comm.send([me], to: right, tag: 7) }
            try comm.barrier()
            if p > 1 {
                let st = try comm.iprobe(from: .rank((me - 1 + p) % p), tag: 7)
                h.expect(st != nil, "barrier \(alg): the message sent before it is not there after it")
                _ = try comm.receive(Int.self, from: .rank((me - 1 + p) % p), tag: 7)
            }
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
