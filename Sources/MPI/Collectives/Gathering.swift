import MyriXen

// The gathering collectives (gather, scatter, allgather, alltoall and their v forms): the
// public calls, blocking and non-blocking. The algorithms are in Algorithms/, chosen by
// Selection.

extension Communicator {
    // MARK: allgather

    /// Every member's `input` (the same count everywhere), in rank order, in every member's
    /// `output` of `size * input.count` elements (MPI_Allgather). Allocates nothing.
    public func allgather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        let blocks = Blocks(uniform: input.count * MemoryLayout<T>.stride)
        try runBlocking("allgather", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard output.count >= input.count * size else {
                throw MPIError(.buffer, "allgather: an output of \(output.count) elements cannot take \(size) x \(input.count)")
            }
            planAllgather(s, blocks: blocks)
        }
    }

    /// Every member's `mine` (the same count everywhere), by rank.
    public func allgather<T: BitwiseCopyable>(_ mine: [T]) throws(MPIError) -> [[T]] {
        var out = [T](unsafeUninitializedCapacity: mine.count * size) { _, n in n = mine.count * size }
        try mine.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try allgather(i, into: o) }
        }
        return (0..<size).map { Array(out[$0 * mine.count ..< ($0 + 1) * mine.count]) }
    }

    /// Every member's `mine`, whatever its count, by rank (MPI_Allgatherv, with the counts
    /// gathered first).
    public func allgatherv<T: BitwiseCopyable>(_ mine: [T]) throws(MPIError) -> [[T]] {
        var counts = [Int](repeating: 0, count: size)
        try [mine.count].withUnsafeBufferPointer { (i) throws(MPIError) in
            try counts.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try allgather(i, into: o) }
        }
        var displacements = [Int](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + counts[r - 1] }
        let total = counts.reduce(0, +)
        var out = [T](unsafeUninitializedCapacity: total) { _, n in n = total }
        try mine.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in
                try allgatherv(i, into: o, counts: counts, displacements: displacements)
            }
        }
        return (0..<size).map { Array(out[displacements[$0] ..< displacements[$0] + counts[$0]]) }
    }

    /// Every member's `input` into `output` at `displacements[r]` (elements), `counts[r]`
    /// elements from rank r (MPI_Allgatherv): `counts[rank]` must be `input.count`.
    public func allgatherv<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                               counts: [Int], displacements: [Int]) throws(MPIError) {
        let stride = MemoryLayout<T>.stride
        try runBlocking("allgatherv", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            try checkBlocks("allgatherv", counts: counts, displacements: displacements, fit: output.count)
            guard counts[rank] == input.count else {
                throw MPIError(.count, "allgatherv: counts[\(rank)] is \(counts[rank]) but this rank passes \(input.count) elements")
            }
            planAllgather(s, blocks: Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride }))
        }
    }

    /// Starts an allgather (MPI_Iallgather); the request gives every member's `mine` by rank.
    public func iallgather<T: BitwiseCopyable>(_ mine: [T]) throws(MPIError) -> Request<[[T]]> {
        let input = OwnedBuffer(copying: mine)
        let n = mine.count, p = size
        let output = OwnedBuffer(bytes: input.count * p)
        return try startCollective("iallgather", input: input.pointer, output: output.pointer, keep: [input, output]) { s in
            planAllgather(s, blocks: Blocks(uniform: input.count))
        } finish: {
            let all = output.array(of: T.self, count: n * p)
            return (0..<p).map { Array(all[$0 * n ..< ($0 + 1) * n]) }
        }
    }

    /// Counts and displacements (in elements) that fit a buffer of `fit` elements.
    func checkBlocks(_ name: String, counts: [Int], displacements: [Int], fit: Int) throws(MPIError) {
        try ensureUsable()
        guard counts.count == size, displacements.count == size else {
            throw MPIError(.count, "\(name): \(counts.count) counts and \(displacements.count) displacements for a communicator of \(size); pass one of each per rank")
        }
        for r in 0..<size {
            guard counts[r] >= 0, displacements[r] >= 0 else {
                throw MPIError(.count, "\(name): rank \(r) has count \(counts[r]) and displacement \(displacements[r]); neither may be negative")
            }
            guard displacements[r] + counts[r] <= fit else {
                throw MPIError(.buffer, "\(name): rank \(r)'s \(counts[r]) elements at \(displacements[r]) do not fit a buffer of \(fit)")
            }
        }
    }

    func planAllgather(_ s: Schedule, blocks: Blocks) {
        switch Selection.choose(.allgather, CallShape(bytes: blocks.bytes(rank), ranks: size)) {
        default: RingAllgather.plan(s, blocks: blocks)
        }
    }
}
