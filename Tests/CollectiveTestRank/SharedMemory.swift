#if canImport(Glibc)
import Glibc
#endif
@_spi(Testing) import MPI
import MyriXen

/// The intra-host collectives through the members' shared segment: taken on one host for
/// short messages (no message crosses the channel), and wrong counts or arguments on one
/// rank fail the call on every rank rather than reading stale memory.
func sharedMemorySuite(_ h: Harness) throws {
    var scratch = [Float](repeating: 0, count: 20_001)
    // The ranks of this host (all of them on one machine; each VM's on emulated VMs).
    let comm = try h.world.splitByHost()
    let p = comm.size, me = comm.rank
    guard p >= 2, p <= IntraHost.maxRanks else { return }
    let saved = Selection.forced
    defer { Selection.forced = saved }
    Selection.forced = [:]
    _ = try comm.allreduce(0, .sum) // the first call makes the segment (a bcast of its key over the channel)
    let sent = comm.endpoint.counter(.messagesSent)
    var sum = try comm.allreduce([Float](repeating: Float(me), count: 100), .sum)
    try comm.barrier()
    var value = me == p - 1 ? 42 : 0
    value = try comm.bcast(value, root: p - 1)
    h.expect(comm.endpoint.counter(.messagesSent) == sent,
             "allreduce, barrier and bcast of short messages on one host sent \(comm.endpoint.counter(.messagesSent) - sent) messages")
    h.expectEqual(sum, [Float](repeating: Float(p * (p - 1) / 2), count: 100), "shared-memory allreduce")
    h.expect(value == 42, "shared-memory bcast: \(value)")
    // Many calls in a row reuse both banks; a rank that runs ahead never overwrites what a
    // slower one still reads (ranks sleep in turn to be slow).
    for k in 0..<200 {
        let got = try comm.allreduce(Int64(me * k), .sum)
        h.expect(got == Int64(k * p * (p - 1) / 2), "allreduce \(k) of a run: \(got)")
        var b = [Int32](repeating: me == k % p ? Int32(k) : -1, count: 3)
        try comm.bcast(&b, root: k % p)
        h.expectEqual(b, [Int32](repeating: Int32(k), count: 3), "bcast \(k) of a run")
    }
    // Long allreduces in chunks of a slot, each reduced a portion per rank: sizes around a
    // chunk, a count no chunk or rank count divides, in place, a non-commutative operation
    // (exactly in rank order), on the shared path as the channel counter shows.
    let perChunk = IntraHost.slotBytes / MemoryLayout<Int32>.stride
    for n in [IntraHost.shortBytes / 4 + 1, perChunk - 1, perChunk, perChunk + 1, 3 * perChunk + 13] {
        let before = comm.endpoint.counter(.messagesSent)
        let mine = (0..<n).map { Int32(contribution(rank: me, index: $0)) }
        let want = (0..<n).map { i in (0..<p).reduce(Int32(0)) { $0 + Int32(contribution(rank: $1, index: i)) } }
        h.expectEqual(try comm.allreduce(mine, .sum), want, "long shared-memory allreduce of \(n) Int32")
        var inPlace = mine
        try comm.allreduce(inPlace: &inPlace, .sum)
        h.expectEqual(inPlace, want, "long shared-memory allreduce of \(n) Int32 in place")
        h.expect(comm.endpoint.counter(.messagesSent) == before, "long allreduce of \(n) Int32 sent messages")
    }
    let matrices = (0..<5000).map { Matrix.of(me, $0) }
    let product = (0..<5000).map { i in (1..<p).reduce(Matrix.of(0, i)) { Matrix.times($0, Matrix.of($1, i)) } }
    h.expectEqual(try comm.allreduce(matrices, Matrix.product), product, "long shared-memory allreduce of a non-commutative product")
    // A long count that differs on one rank, and a long one against a short one.
    for (mine, other) in [(20_000, 20_001), (20_000, 100)] {
        h.expectError(.count, "long allreduce with rank 0 passing \(other) elements, the others \(mine)") {
            _ = try comm.allreduce([Float](repeating: 1, count: me == 0 ? other : mine), .sum)
        }
        try inStep(comm, h, "after a long allreduce with rank 0 passing \(other) elements")
    }
    // Reduce through the slots: every root, in rank order for a non-commutative operation,
    // no channel message; a root's output too small fails the root.
    for root in Set([0, p / 2, p - 1]).sorted() {
        for n in [1, 13, IntraHost.shortBytes / MemoryLayout<Matrix>.stride] {
            let before = comm.endpoint.counter(.messagesSent)
            let got = try comm.reduce((0..<n).map { Matrix.of(me, $0) }, Matrix.product, root: root)
            let want = (0..<n).map { i in (1..<p).reduce(Matrix.of(0, i)) { Matrix.times($0, Matrix.of($1, i)) } }
            if me == root { h.expectEqual(got ?? [], want, "shared-memory reduce of \(n) matrices to \(root)") }
            else { h.expect(got == nil, "shared-memory reduce: a result at non-root \(me)") }
            h.expect(comm.endpoint.counter(.messagesSent) == before, "shared-memory reduce of \(n) to \(root) sent messages")
        }
    }
    // Long reduces, chunk after chunk while the root combines: every root, in place (a root
    // after the first stages its input), exactly in rank order, no channel message.
    for root in Set([0, 1, p - 1]).sorted() {
        for n in [IntraHost.shortBytes / MemoryLayout<Matrix>.stride + 1, 3 * IntraHost.slotBytes / MemoryLayout<Matrix>.stride + 13] {
            let before = comm.endpoint.counter(.messagesSent)
            let want = (0..<n).map { i in (1..<p).reduce(Matrix.of(0, i)) { Matrix.times($0, Matrix.of($1, i)) } }
            let got = try comm.reduce((0..<n).map { Matrix.of(me, $0) }, Matrix.product, root: root)
            if me == root { h.expectEqual(got ?? [], want, "long shared-memory reduce of \(n) matrices to \(root)") }
            var inPlace = (0..<n).map { Matrix.of(me, $0) }
            try inPlace.withUnsafeMutableBufferPointer { b in
                if me == root { try comm.reduce(UnsafeBufferPointer(b), into: b, Matrix.product, root: root) }
                else { try comm.reduce(UnsafeBufferPointer(b), into: UnsafeMutableBufferPointer(start: nil, count: 0), Matrix.product, root: root) }
            }
            if me == root { h.expectEqual(inPlace, want, "long shared-memory reduce of \(n) matrices in place at \(root)") }
            h.expect(comm.endpoint.counter(.messagesSent) == before, "long shared-memory reduce of \(n) to \(root) sent messages")
        }
    }
    // Counts that differ on either side of a chunk or of the short size: every rank that
    // receives fails, and all stay in step (the next call works).
    for (rootCount, otherCount) in [(20_000, 100), (100, 20_000), (20_000, 20_001)] {
        let failure = reduceIntoSmall(comm, [Float](repeating: 1, count: me == 0 ? rootCount : otherCount),
                                      &scratch, root: 0)
        h.expect(me != 0 || failure?.errorClass == .count, "reduce with the root passing \(rootCount), the others \(otherCount): \(String(describing: failure))")
        try inStep(comm, h, "after a reduce with the root passing \(rootCount), the others \(otherCount)")
    }
    do {
        var small = [Float](repeating: 0, count: 2)
        let input = [Float](repeating: 1, count: 4)
        let failure = reduceIntoSmall(comm, input, &small, root: p - 1)
        h.expect(me == p - 1 ? failure?.errorClass == .buffer : failure == nil,
                 "shared-memory reduce into a root's output too small: \(String(describing: failure))")
        let afterReduce = try comm.allreduce(4, .sum)
        h.expect(afterReduce == 4 * p, "allreduce after a failed reduce: \(afterReduce)")
    }
    // Long broadcasts in chunks, copied in by the root while the others copy the one before
    // out: no channel message, every root, one chunk, several, a whole bank and more.
    for bytes in [IntraHost.shortBytes + 1, (1 << 20) + 3, 4 * p * IntraHost.slotBytes + 7] {
        for root in Set([0, p - 1]).sorted() {
            let before = comm.endpoint.counter(.messagesSent)
            let want = (0..<bytes).map { UInt8(truncatingIfNeeded: contribution(rank: root, index: $0)) }
            var buffer = me == root ? want : [UInt8](repeating: 0, count: bytes)
            try comm.bcast(&buffer, root: root)
            h.expectEqual(buffer, want, "shared-memory bcast of \(bytes) bytes from \(root)")
            h.expect(comm.endpoint.counter(.messagesSent) == before, "shared-memory bcast of \(bytes) bytes sent messages")
        }
    }
    // A count rank 1 does not share, in one chunk or several, on either side of the short
    // size: rank 1 fails, so do the others when the root's message takes several chunks,
    // and all stay in step.
    for (rootCount, oneCount) in [(20_000, 20_001), (200_000, 100), (100, 200_000), (20, 8)] {
        var buffer = [UInt8](repeating: 1, count: me == 1 ? oneCount : rootCount)
        let failure = mismatchedBcast(comm, &buffer)
        if let e = failure { h.expect(e.errorClass == .count, "bcast with a count rank 1 does not share: \(e)") }
        h.expect(me != 1 || failure != nil, "bcast of \(rootCount) bytes: rank 1 with \(oneCount) got no error")
        try inStep(comm, h, "after a bcast of \(rootCount) bytes with rank 1 passing \(oneCount)")
    }
    // Alltoall through the slots: every block, in place too, and wrong arguments on one rank.
    for n in [0, 1, 13, IntraHost.shortBytes / 8 / p] {
        let before = comm.endpoint.counter(.messagesSent)
        let blocks = (0..<p).map { r in (0..<n).map { UInt16(truncatingIfNeeded: contribution(rank: me * p + r, index: $0)) } }
        let got = try comm.alltoall(blocks)
        for r in 0..<p {
            h.expectEqual(got[r], (0..<n).map { UInt16(truncatingIfNeeded: contribution(rank: r * p + me, index: $0)) }, "shared-memory alltoall of \(n), block from \(r)")
        }
        var flat = blocks.flatMap { $0 }
        try comm.alltoall(inPlace: &flat)
        h.expectEqual(flat, got.flatMap { $0 }, "shared-memory alltoall of \(n) in place")
        h.expect(comm.endpoint.counter(.messagesSent) == before, "alltoall of \(n) through the segment sent messages")
    }
    // Long blocks in pieces through the slots, and blocks too large for the cache read from
    // every other rank's input in one copy (in place: through the slots).
    for block in [IntraHost.shortBytes / p + 8, (256 << 10) + 5, IntraHost.singleCopyFootprint / (2 * p * p) + 5] {
        let before = comm.endpoint.counter(.messagesSent)
        let blocks = (0..<p).map { r in (0..<block).map { UInt8(truncatingIfNeeded: contribution(rank: me * p + r, index: $0)) } }
        let got = try comm.alltoall(blocks)
        for r in 0..<p {
            h.expectEqual(got[r], (0..<block).map { UInt8(truncatingIfNeeded: contribution(rank: r * p + me, index: $0)) }, "shared-memory alltoall of \(block)-byte blocks, block from \(r)")
        }
        h.expect(comm.endpoint.counter(.messagesSent) == before, "shared-memory alltoall of \(block)-byte blocks sent messages")
        var flat = blocks.flatMap { $0 }
        try comm.alltoall(inPlace: &flat)
        h.expectEqual(flat, got.flatMap { $0 }, "alltoall of \(block)-byte blocks in place")
    }
    // Counts differing across the short/long line, and malformed blocks on one rank.
    h.expectError(.count, "alltoall with rank 0's blocks long, the others' short") {
        _ = try comm.alltoall([[UInt8]](repeating: [UInt8](repeating: 1, count: me == 0 ? 9000 : 10), count: p))
    }
    h.expectError(.count, "long alltoall with rank 0 passing \(p + 1) blocks") {
        _ = try comm.alltoall([[UInt8]](repeating: [UInt8](repeating: 1, count: 9000), count: me == 0 ? p + 1 : p))
    }
    // Large blocks with rank 0 alone in place: its slots against the others' single copy.
    do {
        let block = IntraHost.singleCopyFootprint / (2 * p * p) + 5
        h.expectError(.arg, "large alltoall with rank 0 alone in place") {
            var flat = [UInt8](repeating: 1, count: block * p)
            if me == 0 { try comm.alltoall(inPlace: &flat) } else { _ = try comm.alltoall([[UInt8]](repeating: [UInt8](repeating: 1, count: block), count: p)) }
        }
    }
    try inStep(comm, h, "after the failed long alltoalls")
    h.expectError(.count, "alltoall with rank 0's input not \(p) blocks") {
        var out = [Int32](repeating: 0, count: 4 * p + 1)
        try [Int32](repeating: 1, count: me == 0 ? 4 * p + 1 : 4 * p).withUnsafeBufferPointer { i in
            try out.withUnsafeMutableBufferPointer { o in try comm.alltoall(i, into: o) }
        }
    }
    // A count that differs on one rank: every rank fails with count, none reads stale data.
    h.expectError(.count, "allreduce with rank 0 passing one element more") {
        sum = try comm.allreduce([Float](repeating: 1, count: me == 0 ? 11 : 10), .sum)
    }
    // An output too small on one rank, short or long (empty, even): buffer everywhere.
    let small = me == p - 1
    for (n, smallCount) in [(4, 2), (20_000, 0)] {
        h.expectError(.buffer, "allreduce of \(n) with rank \(p - 1)'s output of \(smallCount)") {
            var out = [Float](repeating: 0, count: small ? smallCount : n)
            try [Float](repeating: 1, count: n).withUnsafeBufferPointer { i in
                try out.withUnsafeMutableBufferPointer { o in try comm.allreduce(i, into: o, .sum) }
            }
        }
        try inStep(comm, h, "after an allreduce of \(n) into an output too small")
    }
    // A rank waiting long on the segment (here for rank 0, busy for a second) naps
    // longer and longer: it costs next to no CPU, as a wait on the channel does.
    do {
        func cpu() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        try comm.barrier()
        let before = cpu(), start = monotonicNanoseconds()
        if me == 0 { usleep(1_000_000) }
        try comm.barrier()
        let used = cpu() - before, waited = Double(monotonicNanoseconds() - start) / 1e9
        if me != 0 { h.expect(used < 0.025 * waited, "a rank waiting \(waited) s in a shared-memory barrier used \(used) s of CPU") }
    }
    // Communicators made and freed, more than an endpoint may share segments at once: each
    // gets its own (after the call that makes it, no channel message), since a freed one
    // gives its segment back.
    for k in 0..<(MXLimits.sharedSegmentsPerEndpoint + 4) {
        let c = try h.world.splitByHost()
        _ = try c.allreduce(k, .sum)
        let before = c.endpoint.counter(.messagesSent)
        let got = try c.allreduce(k + me, .sum)
        h.expect(got == p * k + p * (p - 1) / 2, "allreduce on freed-and-made communicator \(k): \(got)")
        h.expect(c.endpoint.counter(.messagesSent) == before, "communicator \(k) of a row made and freed took the channel, not a segment")
        try c.free()
    }
    // And the communicator goes on working.
    let after = try comm.allreduce(1, .sum)
    h.expect(after == p, "allreduce after the failed ones: \(after)")
}

/// A bcast's error, if it threw one.
func mismatchedBcast(_ comm: Communicator, _ buffer: inout [UInt8]) -> MPIError? {
    do { try comm.bcast(&buffer, root: 0) } catch { return error }
    return nil
}

/// A reduce into `output`'s memory, and its error if it threw one.
func reduceIntoSmall(_ comm: Communicator, _ input: [Float], _ output: inout [Float], root: Int) -> MPIError? {
    do {
        try input.withUnsafeBufferPointer { i in
            try output.withUnsafeMutableBufferPointer { o in try comm.reduce(i, into: o, .sum, root: root) }
        }
    } catch let e as MPIError { return e } catch { return MPIError(.other, "\(error)") }
    return nil
}

/// Checks that the members still run their calls in step: a rank a call ahead or behind would
/// read another call's slots, so values that differ from call to call come out wrong.
func inStep(_ comm: Communicator, _ h: Harness, _ what: String) throws {
    let p = comm.size, me = comm.rank
    for k in 1...3 {
        let sum = try comm.allreduce(Int64(k * 1000 + me), .sum)
        h.expect(sum == Int64(p * k * 1000 + p * (p - 1) / 2), "allreduce \(k) \(what): \(sum)")
        let value = try comm.bcast(me == k % p ? 77 * k : -1, root: k % p)
        h.expect(value == 77 * k, "bcast \(k) \(what): \(value)")
        var b = [Int64](repeating: Int64(me), count: 3)
        try comm.reduce(inPlace: &b, .max, root: (k + 1) % p)
        if me == (k + 1) % p { h.expectEqual(b, [Int64](repeating: Int64(p - 1), count: 3), "reduce \(k) \(what)") }
    }
}
