@_spi(Testing) import MPI

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
                // 8 MiB worth (--large) once per algorithm: from root p/2 on the world.
                for n in h.counts(Int32.self) where n <= 13 || (comm === h.world && root == p / 2) {
                    let want = (0..<n).map { Int32(contribution(rank: root, index: $0)) }
                    var buffer = me == root ? want : [Int32](repeating: -1, count: n)
                    try comm.bcast(&buffer, root: root)
                    h.expectEqual(buffer, want, "bcast \(alg) root \(root) count \(n)")
                }
                let v = try comm.bcast(me == root ? 3.25 * Double(root + 1) : 0, root: root)
                h.expect(v == 3.25 * Double(root + 1), "bcast \(alg) of one value from \(root): \(v)")
                // Byte counts p does not divide (scatter_allgather's chunks end mid-element,
                // some ranks' chunks are empty), and wider elements.
                for n in [p - 1, 3 * p + 1, 1000] {
                    var bytes = me == root ? (0..<n).map { UInt8(truncatingIfNeeded: $0 * 7 + root) } : [UInt8](repeating: 0, count: n)
                    try comm.bcast(&bytes, root: root)
                    h.expectEqual(bytes, (0..<n).map { UInt8(truncatingIfNeeded: $0 * 7 + root) }, "bcast \(alg) of \(n) bytes from \(root)")
                    var vectors = me == root ? (0..<n).map { SIMD3<Double>(Double($0), Double(root), -1) } : [SIMD3<Double>](repeating: .zero, count: n)
                    try comm.bcast(&vectors, root: root)
                    h.expectEqual(vectors, (0..<n).map { SIMD3<Double>(Double($0), Double(root), -1) }, "bcast \(alg) of \(n) SIMD3<Double> from \(root)")
                }
                let request = try comm.ibcast(me == root ? [Int16](repeating: 5, count: 2 * p + 3) : [Int16](repeating: 0, count: 2 * p + 3), root: root)
                h.expectEqual(try request.wait(), [Int16](repeating: 5, count: 2 * p + 3), "ibcast \(alg) from \(root)")
            }
        }
        // The object path.
        let words = try comm.bcast(me == 0 ? ["a": [1, 2], "b": [3]] : [:], root: 0)
        h.expect(words == ["a": [1, 2], "b": [3]], "bcast of a Codable dictionary: \(words)")
        h.expectError(.root, "bcast from a root outside the communicator") { _ = try comm.bcast(1, root: p) }
        // A count the root does not share: every rank that receives fails (the root only
        // sends, so it may finish first); then the communicator works on.
        if p > 1 {
            try h.forEachAlgorithm(.bcast) { alg in
                for root in Set([0, p - 1]).sorted() {
                    var buffer = [Int32](repeating: 1, count: me == root ? 2 * p + 1 : 2 * p + 2)
                    h.checks += 1
                    do {
                        try comm.bcast(&buffer, root: root)
                        if me != root { h.fail("bcast \(alg) from \(root) with a count the root does not share: no error") }
                    } catch let e as MPIError {
                        if e.errorClass != .count && e.errorClass != .truncate { h.fail("bcast \(alg) with mismatched counts: \(e)") }
                    }
                    try comm.barrier()
                    let after = try comm.bcast(me == root ? 42 : 0, root: root)
                    h.expect(after == 42, "bcast \(alg) after a mismatched one: \(after)")
                }
            }
        }
    }
}

/// A value whose encoding always fails: the object path's failure at the root.
struct Unencodable: Codable {
    struct Refused: Error {}
    var name = "not bitwise" // a String, so the object path is the one taken
    init() {}
    init(from decoder: Decoder) throws { throw Refused() }
    func encode(to encoder: Encoder) throws { throw Refused() }
}

/// A Codable bcast whose root cannot encode fails on every member (none waits for bytes).
func unencodableSuite(_ h: Harness) throws {
    let comm = h.world
    h.expectError(.other, "bcast of a value the root cannot encode") { _ = try comm.bcast(Unencodable(), root: comm.size - 1) }
    let after = try comm.allreduce(1, .sum)
    h.expect(after == comm.size, "allreduce after a failed Codable bcast: \(after)")
}
