import MyriXen

// The reducing collectives (reduce, allreduce, reduce_scatter(_block), scan, exscan): the
// public calls, blocking and non-blocking. Contributions are combined in rank order for a
// non-commutative operation (see Operation). The algorithms are in Algorithms/, chosen by
// Selection.
//
// The buffer forms allocate nothing: the schedule, its scratch memory and its requests are the
// communicator's, reused. Checks of what may differ between ranks (buffer sizes, counts) run
// inside the plan, so the other members hear of a failure instead of waiting for this rank.

extension Communicator {
    // MARK: reduce

    /// Combines every member's `input` element by element into the root's `output`
    /// (MPI_Reduce); `output` is used only at the root (others may pass an empty buffer).
    /// Passing the same memory for both at the root is the in-place form. Allocates nothing.
    public func reduce<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                           _ op: Operation<T>, root: Int) throws(MPIError) {
        try check(root: root)
        let n = input.count
        if Selection.wantsSharedMemory(.reduce), MemoryLayout<T>.stride <= IntraHost.slotBytes, let shm = try intraHost() {
            // The root combines the others' slots and its input in rank order, chunk by chunk.
            let valid = rank != root || output.count >= n
            try SharedMemoryCollectives.reduce(shm, input: UnsafeRawPointer(input.baseAddress),
                                               output: rank == root ? UnsafeMutableRawPointer(output.baseAddress) : nil,
                                               elements: n, elementSize: MemoryLayout<T>.stride, root: root, valid: valid, op.raw)
            if !valid { throw MPIError(.buffer, "reduce: the root's output of \(output.count) elements cannot take \(n)") }
            return
        }
        try runBlocking("reduce", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard rank != root || output.count >= n else {
                throw MPIError(.buffer, "reduce: the root's output of \(output.count) elements cannot take \(n)")
            }
            s.reduce(with: op)
            planReduce(s, elements: n, root: root, commutative: op.isCommutative)
        }
    }

    /// Every member's `values` combined, at the root; nil elsewhere.
    public func reduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>, root: Int) throws(MPIError) -> [T]? {
        let n = rank == root ? values.count : 0
        var out = [T](unsafeUninitializedCapacity: n) { _, c in c = n }
        try values.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try reduce(i, into: o, op, root: root) }
        }
        return rank == root ? out : nil
    }

    /// One value from every member, combined, at the root; nil elsewhere.
    public func reduce<T: BitwiseCopyable>(_ value: T, _ op: Operation<T>, root: Int) throws(MPIError) -> T? {
        let v = try inPlaceElement(value) { (b) throws(MPIError) in try reduce(UnsafeBufferPointer(b), into: b, op, root: root) }
        return rank == root ? v : nil
    }

    /// The in-place form (MPI_IN_PLACE at the root): the root's `values` become the
    /// combination of every member's; the others' are left as they are.
    public func reduce<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>, root: Int) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try reduce(UnsafeBufferPointer(b), into: b, op, root: root) }
    }

    /// Starts a reduce (MPI_Ireduce); the request gives the combined values at the root, nil
    /// elsewhere.
    public func ireduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>, root: Int) throws(MPIError) -> Request<[T]?> {
        try check(root: root)
        let buffer = OwnedBuffer(copying: values)
        let n = values.count, isRoot = rank == root
        return try startCollective("ireduce", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s in
            s.reduce(with: op)
            planReduce(s, elements: n, root: root, commutative: op.isCommutative)
        } finish: { isRoot ? buffer.array(of: T.self, count: n) : nil }
    }

    func planReduce(_ s: Schedule, elements: Int, root: Int, commutative: Bool) {
        let shape = CallShape(bytes: elements * s.elementSize, ranks: size, layout: layout, elements: elements, commutative: commutative)
        switch Selection.choose(.reduce, shape) {
        case .rabenseifner: RabenseifnerReduce.plan(s, elements: elements, root: root)
        case .hostAware:
            let layout = layout!
            HostAwareReduce.plan(s, elements: elements, root: root, layout: layout) { s, root in
                // Within a host and among the leaders, the flat choice for that many ranks.
                let flat = CallShape(bytes: shape.bytes, ranks: s.size, elements: elements, commutative: commutative)
                if Selection.rule(.reduce, flat) == .rabenseifner && commutative {
                    RabenseifnerReduce.plan(s, elements: elements, root: root)
                } else {
                    BinomialReduce.plan(s, elements: elements, root: root, commutative: commutative)
                }
            }
        default: BinomialReduce.plan(s, elements: elements, root: root, commutative: commutative)
        }
    }

    // MARK: allreduce

    /// Combines every member's `input` element by element; the result lands in every
    /// member's `output` (MPI_Allreduce). Passing the same memory for both is the in-place
    /// form. Allocates nothing.
    public func allreduce<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                              _ op: Operation<T>) throws(MPIError) {
        let n = input.count
        let bytes = n * MemoryLayout<T>.stride
        if Selection.wantsSharedMemory(.allreduce), MemoryLayout<T>.stride <= IntraHost.slotBytes, let shm = try intraHost() {
            if bytes > IntraHost.shortBytes {
                try SharedMemoryCollectives.allreduceLong(shm, input: UnsafeRawPointer(input.baseAddress!),
                                                          // (a too-small, even empty, output is declared and never written)
                                                          output: UnsafeMutableRawPointer(output.baseAddress ?? UnsafeMutablePointer(mutating: input.baseAddress!)),
                                                          elements: n,
                                                          elementSize: MemoryLayout<T>.stride, valid: output.count >= n, op.raw)
            } else {
                try SharedMemoryCollectives.allreduce(shm, input: UnsafeRawPointer(input.baseAddress),
                                                      output: UnsafeMutableRawPointer(output.baseAddress), elements: n,
                                                      elementSize: MemoryLayout<T>.stride, valid: output.count >= n, op.raw)
            }
            if output.count < n { throw MPIError(.buffer, "allreduce: an output of \(output.count) elements cannot take \(n)") }
            return
        }
        try runBlocking("allreduce", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard output.count >= n else {
                throw MPIError(.buffer, "allreduce: an output of \(output.count) elements cannot take \(n)")
            }
            s.reduce(with: op)
            planAllreduce(s, elements: n, commutative: op.isCommutative)
        }
    }

    /// Every member's `values` combined, on every member.
    public func allreduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> [T] {
        var out = [T](unsafeUninitializedCapacity: values.count) { _, n in n = values.count }
        try values.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try allreduce(i, into: o, op) }
        }
        return out
    }

    /// The in-place form (MPI_IN_PLACE): `values` becomes the combination of every member's.
    public func allreduce<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try allreduce(UnsafeBufferPointer(b), into: b, op) }
    }

    /// One value from every member, combined.
    public func allreduce<T: BitwiseCopyable>(_ value: T, _ op: Operation<T>) throws(MPIError) -> T {
        try inPlaceElement(value) { (b) throws(MPIError) in try allreduce(UnsafeBufferPointer(b), into: b, op) }
    }

    /// Starts an allreduce (MPI_Iallreduce); the request gives the combined values.
    public func iallreduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> Request<[T]> {
        let buffer = OwnedBuffer(copying: values)
        let n = values.count
        return try startCollective("iallreduce", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s in
            s.reduce(with: op)
            planAllreduce(s, elements: n, commutative: op.isCommutative)
        } finish: { buffer.array(of: T.self, count: n) }
    }

    func planAllreduce(_ s: Schedule, elements: Int, commutative: Bool) {
        // Planned among the schedule's view: the whole communicator, or the leaders of the
        // hosts inside a two-level plan (which then plans flat).
        let shape = CallShape(bytes: elements * s.elementSize, ranks: s.size, layout: s.view == nil ? layout : nil,
                              elements: elements, commutative: commutative)
        switch Selection.choose(.allreduce, shape) {
        case .hostAware:
            HostAwareAllreduce.plan(s, elements: elements, commutative: commutative, layout: shape.layout!) { s in
                planAllreduce(s, elements: elements, commutative: commutative)
            }
        case .rabenseifner: RabenseifnerAllreduce.plan(s, elements: elements)
        case .ring: RingAllreduce.plan(s, elements: elements)
        default: RecursiveDoublingAllreduce.plan(s, elements: elements)
        }
    }

    // MARK: reduce_scatter_block

    /// Combines every member's `input` of `size` blocks of equal count element by element and
    /// leaves block r of the result in rank r's `output` (MPI_Reduce_scatter_block); the
    /// block count is `input.count / size`. Passing the same memory for both is the in-place
    /// form (the block lands at its start). Allocates nothing.
    public func reduceScatterBlock<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                                       _ op: Operation<T>) throws(MPIError) {
        let stride = MemoryLayout<T>.stride, p = size
        try runBlocking("reduce_scatter_block", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard input.count % p == 0 else {
                throw MPIError(.count, "reduce_scatter_block: an input of \(input.count) elements is not \(p) blocks of one count (make it a multiple of the communicator's size)")
            }
            let block = input.count / p
            guard output.count >= block else {
                throw MPIError(.buffer, "reduce_scatter_block: an output of \(output.count) elements cannot take a block of \(block)")
            }
            s.reduce(with: op)
            planReduceScatter(s, blocks: Blocks(uniform: block * stride), commutative: op.isCommutative)
        }
    }

    /// Block `rank` of every member's `values` (of `size` equal blocks) combined.
    public func reduceScatterBlock<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> [T] {
        let n = values.count / max(size, 1)
        var out = [T](unsafeUninitializedCapacity: n) { _, c in c = n }
        try values.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try reduceScatterBlock(i, into: o, op) }
        }
        return out
    }

    /// The in-place form (MPI_IN_PLACE): `values` (of `size` equal blocks) becomes this rank's
    /// block of the combination.
    public func reduceScatterBlock<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try reduceScatterBlock(UnsafeBufferPointer(b), into: b, op) }
        values.removeLast(values.count - values.count / max(size, 1))
    }

    /// Starts a reduce_scatter_block (MPI_Ireduce_scatter_block); the request gives this
    /// rank's block of the combination.
    public func ireduceScatterBlock<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> Request<[T]> {
        let buffer = OwnedBuffer(copying: values)
        let p = size, stride = MemoryLayout<T>.stride
        return try startCollective("ireduce_scatter_block", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s throws(MPIError) in
            guard values.count % p == 0 else {
                throw MPIError(.count, "ireduce_scatter_block: \(values.count) elements are not \(p) blocks of one count (make it a multiple of the communicator's size)")
            }
            s.reduce(with: op)
            planReduceScatter(s, blocks: Blocks(uniform: values.count / p * stride), commutative: op.isCommutative)
        } finish: { buffer.array(of: T.self, count: values.count / p) }
    }

    // MARK: reduce_scatter

    /// Combines every member's `input` element by element and leaves the `counts[r]`
    /// elements from offset `counts[0] + ... + counts[r - 1]` of the result in rank r's
    /// `output` (MPI_Reduce_scatter). Every member passes the same counts. Passing the same
    /// memory for both is the in-place form (the block lands at its start).
    public func reduceScatter<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                                  counts: [Int], _ op: Operation<T>) throws(MPIError) {
        try runBlocking("reduce_scatter", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            let blocks = try reduceScatterBlocks("reduce_scatter", counts: counts, T.self, input: input.count, output: output.count)
            s.reduce(with: op)
            planReduceScatter(s, blocks: blocks, commutative: op.isCommutative)
        }
    }

    /// This rank's `counts[rank]` elements of every member's `values` combined.
    public func reduceScatter<T: BitwiseCopyable>(_ values: [T], counts: [Int], _ op: Operation<T>) throws(MPIError) -> [T] {
        let n = counts.indices.contains(rank) ? max(counts[rank], 0) : 0
        var out = [T](unsafeUninitializedCapacity: n) { _, c in c = n }
        try values.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try reduceScatter(i, into: o, counts: counts, op) }
        }
        return out
    }

    /// The in-place form (MPI_IN_PLACE): `values` becomes this rank's `counts[rank]` elements
    /// of the combination.
    public func reduceScatter<T: BitwiseCopyable>(inPlace values: inout [T], counts: [Int], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try reduceScatter(UnsafeBufferPointer(b), into: b, counts: counts, op) }
        values.removeLast(values.count - counts[rank])
    }

    /// Starts a reduce_scatter (MPI_Ireduce_scatter); the request gives this rank's
    /// `counts[rank]` elements of the combination.
    public func ireduceScatter<T: BitwiseCopyable>(_ values: [T], counts: [Int], _ op: Operation<T>) throws(MPIError) -> Request<[T]> {
        let buffer = OwnedBuffer(copying: values)
        let me = rank
        return try startCollective("ireduce_scatter", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s throws(MPIError) in
            let blocks = try reduceScatterBlocks("ireduce_scatter", counts: counts, T.self, input: values.count, output: values.count)
            s.reduce(with: op)
            planReduceScatter(s, blocks: blocks, commutative: op.isCommutative)
        } finish: { buffer.array(of: T.self, count: counts[me]) }
    }

    /// The blocks of a reduce_scatter by `counts` (in bytes, packed in rank order), after
    /// checking the counts against the communicator and the buffers.
    func reduceScatterBlocks<T>(_ name: String, counts: [Int], _: T.Type, input: Int, output: Int) throws(MPIError) -> Blocks {
        guard counts.count == size else {
            throw MPIError(.count, "\(name): \(counts.count) counts for a communicator of \(size) ranks (pass one per rank)")
        }
        var total = 0
        for (r, c) in counts.enumerated() {
            guard c >= 0 else { throw MPIError(.count, "\(name): counts[\(r)] is \(c); a count may not be negative") }
            total += c
        }
        guard input >= total else {
            throw MPIError(.buffer, "\(name): an input of \(input) elements cannot hold the \(total) the counts add up to")
        }
        guard output >= counts[rank] else {
            throw MPIError(.buffer, "\(name): an output of \(output) elements cannot take this rank's \(counts[rank])")
        }
        let stride = MemoryLayout<T>.stride
        var displacements = [Int](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + counts[r - 1] * stride }
        return Blocks(counts: counts.map { $0 * stride }, displacements: displacements)
    }

    func planReduceScatter(_ s: Schedule, blocks: Blocks, commutative: Bool) {
        let total = blocks.offset(size - 1) + blocks.bytes(size - 1)
        let shape = CallShape(bytes: total, ranks: size, elements: total / s.elementSize, commutative: commutative)
        switch Selection.choose(.reduceScatter, shape) {
        case .recursiveHalving: RecursiveHalvingReduceScatter.plan(s, blocks: blocks)
        default: PairwiseReduceScatter.plan(s, blocks: blocks)
        }
    }

    // MARK: scan and exscan

    /// The combination of ranks 0...rank's `input`, element by element, in `output`
    /// (MPI_Scan). Passing the same memory for both is the in-place form. Allocates nothing.
    public func scan<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                         _ op: Operation<T>) throws(MPIError) {
        try runScan("scan", input, into: output, op, exclusive: false)
    }

    /// The combination of ranks 0..<rank's `input` in `output` (MPI_Exscan); rank 0's output
    /// is not written (MPI leaves it undefined). Passing the same memory for both is the
    /// in-place form. Allocates nothing.
    public func exscan<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                           _ op: Operation<T>) throws(MPIError) {
        try runScan("exscan", input, into: output, op, exclusive: true)
    }

    func runScan<T: BitwiseCopyable>(_ name: StaticString, _ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                     _ op: Operation<T>, exclusive: Bool) throws(MPIError) {
        let n = input.count
        try runBlocking(name, input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard output.count >= n else {
                throw MPIError(.buffer, "\(name): an output of \(output.count) elements cannot take \(n)")
            }
            s.reduce(with: op)
            planScan(s, elements: n, exclusive: exclusive)
        }
    }

    /// The combination of ranks 0...rank's `values`.
    public func scan<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> [T] {
        var v = values
        try scan(inPlace: &v, op)
        return v
    }

    /// The combination of ranks 0...rank's `value`.
    public func scan<T: BitwiseCopyable>(_ value: T, _ op: Operation<T>) throws(MPIError) -> T {
        try inPlaceElement(value) { (b) throws(MPIError) in try scan(UnsafeBufferPointer(b), into: b, op) }
    }

    /// The in-place form (MPI_IN_PLACE): `values` becomes the combination of ranks 0...rank's.
    public func scan<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try scan(UnsafeBufferPointer(b), into: b, op) }
    }

    /// The combination of ranks 0..<rank's `values`; nil at rank 0.
    public func exscan<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> [T]? {
        var v = values
        try exscan(inPlace: &v, op)
        return rank == 0 ? nil : v
    }

    /// The combination of ranks 0..<rank's `value`; nil at rank 0.
    public func exscan<T: BitwiseCopyable>(_ value: T, _ op: Operation<T>) throws(MPIError) -> T? {
        let v = try inPlaceElement(value) { (b) throws(MPIError) in try exscan(UnsafeBufferPointer(b), into: b, op) }
        return rank == 0 ? nil : v
    }

    /// The in-place form (MPI_IN_PLACE): `values` becomes the combination of ranks 0..<rank's
    /// (rank 0's are left as they are).
    public func exscan<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try exscan(UnsafeBufferPointer(b), into: b, op) }
    }

    /// Starts a scan (MPI_Iscan); the request gives the combination of ranks 0...rank's.
    public func iscan<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> Request<[T]> {
        let buffer = OwnedBuffer(copying: values)
        let n = values.count
        return try startCollective("iscan", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s in
            s.reduce(with: op)
            planScan(s, elements: n, exclusive: false)
        } finish: { buffer.array(of: T.self, count: n) }
    }

    /// Starts an exscan (MPI_Iexscan); the request gives the combination of ranks 0..<rank's,
    /// nil at rank 0.
    public func iexscan<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> Request<[T]?> {
        let buffer = OwnedBuffer(copying: values)
        let n = values.count, first = rank == 0
        return try startCollective("iexscan", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s in
            s.reduce(with: op)
            planScan(s, elements: n, exclusive: true)
        } finish: { first ? nil : buffer.array(of: T.self, count: n) }
    }

    func planScan(_ s: Schedule, elements: Int, exclusive: Bool) {
        let op: CollectiveOperation = exclusive ? .exscan : .scan
        switch Selection.choose(op, CallShape(bytes: elements * s.elementSize, ranks: size, elements: elements)) {
        default: RecursiveDoublingScan.plan(s, elements: elements, exclusive: exclusive)
        }
    }
}
