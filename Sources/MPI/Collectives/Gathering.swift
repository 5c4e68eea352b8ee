import MyriXen

// The gathering collectives (gather, scatter, allgather, alltoall and their v forms): the
// public calls, blocking and non-blocking. The algorithms are in Algorithms/, chosen by
// Selection.
//
// In place (MPI_IN_PLACE): pass the same memory as input and output. For gather(v) at the
// root and allgather(v) everywhere, the rank's own block is then already at its place in the
// output (passing exactly that place as the input is in place too); for scatter(v) at the
// root, the root's own block stays where it is in the input; for alltoall(v) the output's
// blocks replace the input's.

extension Communicator {
    // MARK: gather

    /// Every member's `input` (the same count everywhere), in rank order, in the root's
    /// `output` of `size * input.count` elements (MPI_Gather); `output` is ignored elsewhere.
    /// Allocates nothing.
    public func gather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        try check(root: root)
        let n = input.count, stride = MemoryLayout<T>.stride
        let inPlace = rank == root && sameMemory(input, output)
        try runBlocking("gather", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            if rank == root {
                guard output.count >= n * size else {
                    throw MPIError(.buffer, "gather: the root's output of \(output.count) elements cannot take \(size) x \(n)")
                }
                if inPlace { s.input = UnsafeRawPointer(output.baseAddress! + root * n) }
            }
            planGather(s, block: n * stride, root: root)
        }
    }

    /// Every member's `mine` (the same count everywhere), by rank, at the root; nil elsewhere.
    public func gather<T: BitwiseCopyable>(_ mine: [T], root: Int) throws(MPIError) -> [[T]]? {
        let n = mine.count, total = rank == root ? n * size : 0
        var out = [T](unsafeUninitializedCapacity: total) { _, k in k = total }
        try mine.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try gather(i, into: o, root: root) }
        }
        return rank == root ? (0..<size).map { Array(out[$0 * n ..< ($0 + 1) * n]) } : nil
    }

    /// Any Codable value from every member, by rank, at the root; nil elsewhere (the object
    /// path: encodings gathered after their lengths).
    @_disfavoredOverload
    public func gather<T: Codable>(_ value: T, root: Int) throws(MPIError) -> [T]? {
        try check(root: root)
        let bytes = try encodeForCollective(value, "gather")
        guard let all = try gatherv(bytes, root: root) else { return nil }
        return try all.enumerated().map { (r, b) throws(MPIError) in try decodeFromCollective(T.self, b, from: r) }
    }

    /// Starts a gather (MPI_Igather); the request gives every member's `mine` by rank at the
    /// root, nil elsewhere.
    public func igather<T: BitwiseCopyable>(_ mine: [T], root: Int) throws(MPIError) -> Request<[[T]]?> {
        try check(root: root)
        let input = OwnedBuffer(copying: mine)
        let n = mine.count, p = size, isRoot = rank == root
        let output = OwnedBuffer(bytes: isRoot ? input.count * p : 0)
        return try startCollective("igather", input: input.pointer, output: output.pointer, keep: [input, output]) { s in
            planGather(s, block: input.count, root: root)
        } finish: {
            guard isRoot else { return nil }
            let all = output.array(of: T.self, count: n * p)
            return (0..<p).map { Array(all[$0 * n ..< ($0 + 1) * n]) }
        }
    }

    func planGather(_ s: Schedule, block: Int, root: Int) {
        switch Selection.choose(.gather, CallShape(bytes: block, ranks: size, layout: layout)) {
        case .linear: LinearGather.plan(s, blocks: Blocks(uniform: block), mine: block, root: root)
        case .hostAware:
            // Within a host, straight to its leader (shared memory: linear, as on one host).
            HostAwareGather.plan(s, block: block, root: root, layout: layout!) { s, root in
                LinearGather.plan(s, blocks: Blocks(uniform: block), mine: block, root: root)
            }
        default: BinomialGather.plan(s, block: block, root: root)
        }
    }

    // MARK: gatherv

    /// Every member's `input` into the root's `output`, rank r's `counts[r]` elements at
    /// `displacements[r]` (MPI_Gatherv): `counts` and `displacements` matter at the root
    /// only, where `counts[root]` must be `input.count` (unless in place).
    public func gatherv<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                            counts: [Int], displacements: [Int], root: Int) throws(MPIError) {
        try check(root: root)
        let stride = MemoryLayout<T>.stride
        let inPlace = rank == root && sameMemory(input, output)
        try runBlocking("gatherv", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            var mine = input.count * stride
            var blocks = Blocks(uniform: 0)
            if rank == root {
                try checkBlocks("gatherv", counts: counts, displacements: displacements, fit: output.count)
                if inPlace {
                    s.input = UnsafeRawPointer(output.baseAddress! + displacements[root])
                    mine = counts[root] * stride
                } else if counts[root] != input.count {
                    throw MPIError(.count, "gatherv: counts[\(root)] is \(counts[root]) but the root passes \(input.count) elements")
                }
                blocks = Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride })
            }
            LinearGather.plan(s, blocks: blocks, mine: mine, root: root)
        }
    }

    /// Every member's `mine`, whatever its count, by rank, at the root; nil elsewhere
    /// (MPI_Gatherv, with the counts gathered first).
    public func gatherv<T: BitwiseCopyable>(_ mine: [T], root: Int) throws(MPIError) -> [[T]]? {
        let counts = try gather([mine.count], root: root)?.map { $0[0] }
        let (displacements, total) = packed(counts ?? [])
        var out = [T](unsafeUninitializedCapacity: total) { _, k in k = total }
        try mine.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in
                try gatherv(i, into: o, counts: counts ?? [], displacements: displacements, root: root)
            }
        }
        guard let counts else { return nil }
        return (0..<size).map { Array(out[displacements[$0] ..< displacements[$0] + counts[$0]]) }
    }

    /// Starts a gatherv (MPI_Igatherv): `counts` (every member's count, meaningful at the
    /// root only) say how many elements each brings; the request gives them by rank at the
    /// root, nil elsewhere.
    public func igatherv<T: BitwiseCopyable>(_ mine: [T], counts: [Int], root: Int) throws(MPIError) -> Request<[[T]]?> {
        try check(root: root)
        let stride = MemoryLayout<T>.stride, isRoot = rank == root
        let input = OwnedBuffer(copying: mine)
        let (displacements, total) = packed(isRoot ? counts : [])
        let output = OwnedBuffer(bytes: total * stride)
        return try startCollective("igatherv", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            var blocks = Blocks(uniform: 0)
            if isRoot {
                try checkBlocks("igatherv", counts: counts, displacements: displacements, fit: total)
                guard counts[root] == mine.count else {
                    throw MPIError(.count, "igatherv: counts[\(root)] is \(counts[root]) but the root passes \(mine.count) elements")
                }
                blocks = Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride })
            }
            LinearGather.plan(s, blocks: blocks, mine: input.count, root: root)
        } finish: {
            guard isRoot else { return nil }
            let all = output.array(of: T.self, count: total)
            return (0..<counts.count).map { Array(all[displacements[$0] ..< displacements[$0] + counts[$0]]) }
        }
    }

    // MARK: scatter

    /// The root's `input` of `size * output.count` elements cut in rank order: rank r's
    /// block lands in rank r's `output` (MPI_Scatter; the same count everywhere). `input` is
    /// ignored except at the root. In place (the root passes its input as the output too),
    /// the root's count is `input.count / size`. Allocates nothing.
    public func scatter<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        try check(root: root)
        let inPlace = rank == root && sameMemory(input, output)
        // In place the root's count is its input's share.
        let n = inPlace ? input.count / max(size, 1) : output.count, stride = MemoryLayout<T>.stride
        try runBlocking("scatter", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            if rank == root {
                guard input.count >= n * size else {
                    throw MPIError(.buffer, "scatter: the root's input of \(input.count) elements cannot give \(size) x \(n)")
                }
                if inPlace { s.output = UnsafeMutableRawPointer(mutating: input.baseAddress! + root * n) }
            }
            planScatter(s, block: n * stride, root: root)
        }
    }

    /// The root's `chunks` (one per member; the others pass []), chunk r to rank r (MPI_Scatter,
    /// or MPI_Scatterv when they differ in size: the sizes are scattered first, so every
    /// member learns its count).
    public func scatter<T: BitwiseCopyable>(_ chunks: [[T]], root: Int) throws(MPIError) -> [T] {
        try check(root: root)
        let isRoot = rank == root
        let counts = isRoot ? chunks.map(\.count) : []
        var count = 0
        try withUnsafeMutablePointer(to: &count) { (c) throws(MPIError) in
            try counts.withUnsafeBufferPointer { (i) throws(MPIError) in
                try runBlocking("scatter", input: UnsafeRawPointer(i.baseAddress), output: UnsafeMutableRawPointer(c)) { s throws(MPIError) in
                    if isRoot && chunks.count != size {
                        throw MPIError(.count, "scatter: the root passes \(chunks.count) chunks for a communicator of \(size); pass one per rank")
                    }
                    planScatter(s, block: MemoryLayout<Int>.stride, root: root)
                }
            }
        }
        let flat = isRoot ? chunks.flatMap { $0 } : []
        let (displacements, _) = packed(counts)
        var out = [T](unsafeUninitializedCapacity: count) { _, k in k = count }
        try flat.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in
                try scatterv(i, counts: counts, displacements: displacements, into: o, root: root)
            }
        }
        return out
    }

    /// Starts a scatter (MPI_Iscatter) of the root's `chunks` (one per member, each of
    /// `count` elements; the others pass []); the request gives this member's chunk of
    /// `count` elements.
    public func iscatter<T: BitwiseCopyable>(_ chunks: [[T]], count: Int, root: Int) throws(MPIError) -> Request<[T]> {
        try check(root: root)
        let isRoot = rank == root, p = size
        let input = OwnedBuffer(copying: isRoot ? chunks.flatMap { $0 } : [])
        let output = OwnedBuffer(bytes: count * MemoryLayout<T>.stride)
        return try startCollective("iscatter", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            if isRoot {
                guard chunks.count == p, chunks.allSatisfy({ $0.count == count }) else {
                    throw MPIError(.count, "iscatter: the root passes \(chunks.count) chunks of \(chunks.map(\.count)) elements; pass \(p) of \(count) each")
                }
            }
            planScatter(s, block: output.count, root: root)
        } finish: { output.array(of: T.self, count: count) }
    }

    func planScatter(_ s: Schedule, block: Int, root: Int) {
        switch Selection.choose(.scatter, CallShape(bytes: block, ranks: size, layout: layout)) {
        case .linear: LinearScatter.plan(s, blocks: Blocks(uniform: block), mine: block, root: root)
        default: BinomialScatter.plan(s, block: block, root: root)
        }
    }

    // MARK: scatterv

    /// The root's `input` cut by `counts` and `displacements` (elements; meaningful at the
    /// root only): rank r's `output` gets `counts[r]` elements from `displacements[r]`
    /// (MPI_Scatterv). Each member's `output.count` must be its count.
    public func scatterv<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, counts: [Int], displacements: [Int],
                                             into output: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        try check(root: root)
        let stride = MemoryLayout<T>.stride
        let inPlace = rank == root && sameMemory(input, output)
        try runBlocking("scatterv", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            var mine = output.count * stride
            var blocks = Blocks(uniform: 0)
            if rank == root {
                try checkBlocks("scatterv", counts: counts, displacements: displacements, fit: input.count)
                if inPlace {
                    s.output = UnsafeMutableRawPointer(mutating: input.baseAddress! + displacements[root])
                    mine = counts[root] * stride
                } else if counts[root] != output.count {
                    throw MPIError(.count, "scatterv: counts[\(root)] is \(counts[root]) but the root's output has \(output.count) elements")
                }
                blocks = Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride })
            }
            LinearScatter.plan(s, blocks: blocks, mine: mine, root: root)
        }
    }

    /// Starts a scatterv (MPI_Iscatterv) of the root's `chunks` (one per member, any sizes;
    /// the others pass []); each member passes its own chunk's `count`, and the request
    /// gives its chunk.
    public func iscatterv<T: BitwiseCopyable>(_ chunks: [[T]], count: Int, root: Int) throws(MPIError) -> Request<[T]> {
        try check(root: root)
        let stride = MemoryLayout<T>.stride, isRoot = rank == root, p = size
        let input = OwnedBuffer(copying: isRoot ? chunks.flatMap { $0 } : [])
        let output = OwnedBuffer(bytes: count * stride)
        let counts = isRoot ? chunks.map(\.count) : []
        let (displacements, _) = packed(counts)
        return try startCollective("iscatterv", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            var blocks = Blocks(uniform: 0)
            if isRoot {
                guard chunks.count == p else {
                    throw MPIError(.count, "iscatterv: the root passes \(chunks.count) chunks for a communicator of \(p); pass one per rank")
                }
                guard counts[root] == count else {
                    throw MPIError(.count, "iscatterv: the root's own chunk has \(counts[root]) elements but it passes count \(count)")
                }
                blocks = Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride })
            }
            LinearScatter.plan(s, blocks: blocks, mine: output.count, root: root)
        } finish: { output.array(of: T.self, count: count) }
    }

    // MARK: allgather

    /// Every member's `input` (the same count everywhere), in rank order, in every member's
    /// `output` of `size * input.count` elements (MPI_Allgather). Allocates nothing.
    public func allgather<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        let n = input.count
        let blocks = Blocks(uniform: n * MemoryLayout<T>.stride)
        let inPlace = sameMemory(input, output)
        try runBlocking("allgather", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard output.count >= n * size else {
                throw MPIError(.buffer, "allgather: an output of \(output.count) elements cannot take \(size) x \(n)")
            }
            if inPlace { s.input = UnsafeRawPointer(output.baseAddress! + rank * n) }
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

    /// The in-place form: `buffer` holds `size` blocks of one count, this member's own at its
    /// rank's place; afterwards every block is the one of its rank.
    public func allgather<T: BitwiseCopyable>(inPlace buffer: inout [T]) throws(MPIError) {
        guard size > 0, buffer.count % size == 0 else {
            throw MPIError(.count, "allgather(inPlace:): a buffer of \(buffer.count) elements is not \(size) blocks of one count")
        }
        try buffer.withUnsafeMutableBufferPointer { (b) throws(MPIError) in
            try allgather(UnsafeBufferPointer(rebasing: b[0 ..< b.count / size]), into: b)
        }
    }

    /// Any Codable value from every member, by rank, on every member (the object path:
    /// encodings gathered after their lengths).
    @_disfavoredOverload
    public func allgather<T: Codable>(_ value: T) throws(MPIError) -> [T] {
        let bytes = try encodeForCollective(value, "allgather")
        return try allgatherv(bytes).enumerated().map { (r, b) throws(MPIError) in try decodeFromCollective(T.self, b, from: r) }
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

    // MARK: allgatherv

    /// Every member's `mine`, whatever its count, by rank (MPI_Allgatherv, with the counts
    /// gathered first).
    public func allgatherv<T: BitwiseCopyable>(_ mine: [T]) throws(MPIError) -> [[T]] {
        var counts = [Int](repeating: 0, count: size)
        try [mine.count].withUnsafeBufferPointer { (i) throws(MPIError) in
            try counts.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try allgather(i, into: o) }
        }
        let (displacements, total) = packed(counts)
        var out = [T](unsafeUninitializedCapacity: total) { _, n in n = total }
        try mine.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in
                try allgatherv(i, into: o, counts: counts, displacements: displacements)
            }
        }
        return (0..<size).map { Array(out[displacements[$0] ..< displacements[$0] + counts[$0]]) }
    }

    /// Every member's `input` into `output` at `displacements[r]` (elements), `counts[r]`
    /// elements from rank r (MPI_Allgatherv): `counts[rank]` must be `input.count` (unless
    /// in place).
    public func allgatherv<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                               counts: [Int], displacements: [Int]) throws(MPIError) {
        let stride = MemoryLayout<T>.stride
        let inPlace = sameMemory(input, output)
        try runBlocking("allgatherv", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            try checkBlocks("allgatherv", counts: counts, displacements: displacements, fit: output.count)
            if inPlace {
                s.input = UnsafeRawPointer(output.baseAddress! + displacements[rank])
            } else if counts[rank] != input.count {
                throw MPIError(.count, "allgatherv: counts[\(rank)] is \(counts[rank]) but this rank passes \(input.count) elements")
            }
            planAllgather(s, blocks: Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride }))
        }
    }

    /// Starts an allgatherv (MPI_Iallgatherv): `counts` are every member's count (the same
    /// everywhere); the request gives every member's `mine` by rank.
    public func iallgatherv<T: BitwiseCopyable>(_ mine: [T], counts: [Int]) throws(MPIError) -> Request<[[T]]> {
        let stride = MemoryLayout<T>.stride
        let input = OwnedBuffer(copying: mine)
        let (displacements, total) = packed(counts)
        let output = OwnedBuffer(bytes: total * stride)
        return try startCollective("iallgatherv", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            try checkBlocks("iallgatherv", counts: counts, displacements: displacements, fit: total)
            guard counts[rank] == mine.count else {
                throw MPIError(.count, "iallgatherv: counts[\(rank)] is \(counts[rank]) but this rank passes \(mine.count) elements")
            }
            planAllgather(s, blocks: Blocks(counts: counts.map { $0 * stride }, displacements: displacements.map { $0 * stride }))
        } finish: {
            let all = output.array(of: T.self, count: total)
            return (0..<counts.count).map { Array(all[displacements[$0] ..< displacements[$0] + counts[$0]]) }
        }
    }

    func planAllgather(_ s: Schedule, blocks: Blocks) {
        var total = 0
        for r in 0..<size { total += blocks.bytes(r) }
        switch Selection.choose(.allgather, CallShape(bytes: total, ranks: size)) {
        case .recursiveDoubling: RecursiveDoublingAllgather.plan(s, blocks: blocks)
        case .bruck: BruckAllgather.plan(s, blocks: blocks)
        default: RingAllgather.plan(s, blocks: blocks)
        }
    }

    // MARK: alltoall

    /// Block r of every member's `input` (`size` blocks of one count) goes to rank r; block r
    /// of `output` comes from rank r (MPI_Alltoall). Passing the same memory for both is the
    /// in-place form. Allocates nothing.
    public func alltoall<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>) throws(MPIError) {
        try alltoall(input, into: output, refusing: nil)
    }

    /// The buffer form; with `refusing`, this rank's arguments were wrong (`input` then only
    /// says how long the others' are): it takes part in the call as the others do, on the
    /// same path, and fails it there with that error, so they fail it too.
    func alltoall<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                      refusing: MPIError?) throws(MPIError) {
        let stride = MemoryLayout<T>.stride
        let inPlace = sameMemory(input, output)
        if Selection.wantsSharedMemory(.alltoall), let shm = try intraHost() {
            let invalid = refusing.map { $0.errorClass == .buffer ? IntraHost.invalid : IntraHost.invalidCount }
                ?? (input.count % size != 0 ? IntraHost.invalidCount : output.count < input.count ? IntraHost.invalid : nil)
            try SharedMemoryCollectives.alltoall(shm, input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress),
                                                 block: input.count / size * stride, invalid: invalid)
            if let e = refusing { throw e }
            guard input.count % size == 0 else {
                throw MPIError(.count, "alltoall: an input of \(input.count) elements is not \(size) blocks of one count")
            }
            guard output.count >= input.count else {
                throw MPIError(.buffer, "alltoall: an output of \(output.count) elements cannot take \(input.count)")
            }
            return
        }
        try runBlocking("alltoall", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            if let e = refusing { throw e }
            guard input.count % size == 0 else {
                throw MPIError(.count, "alltoall: an input of \(input.count) elements is not \(size) blocks of one count")
            }
            guard output.count >= input.count else {
                throw MPIError(.buffer, "alltoall: an output of \(output.count) elements cannot take \(input.count)")
            }
            planAlltoall(s, block: input.count / size * stride, inPlace: inPlace)
        }
    }

    /// Block r of every member's `blocks` (`size` blocks of one count) to rank r; the result's
    /// block r comes from rank r.
    public func alltoall<T: BitwiseCopyable>(_ blocks: [[T]]) throws(MPIError) -> [[T]] {
        let n = blocks.first?.count ?? 0
        guard blocks.count == size, blocks.allSatisfy({ $0.count == n }) else {
            // The others run the buffer form with size blocks of n: so does this rank, failing it.
            let e = MPIError(.count, "alltoall: \(blocks.count) blocks of \(Set(blocks.map(\.count)).sorted()) elements; pass \(size) blocks of one count")
            // Not in place, as the others' calls are not (the path depends on it).
            let placeholder = [T](unsafeUninitializedCapacity: n * size) { _, k in k = n * size }
            var out = placeholder
            try placeholder.withUnsafeBufferPointer { (i) throws(MPIError) in
                try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try alltoall(i, into: o, refusing: e) }
            }
            throw e
        }
        let flat = blocks.flatMap { $0 }
        var out = [T](unsafeUninitializedCapacity: flat.count) { _, k in k = flat.count }
        try flat.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try alltoall(i, into: o) }
        }
        return (0..<size).map { Array(out[$0 * n ..< ($0 + 1) * n]) }
    }

    /// The in-place form: `buffer`'s `size` blocks of one count are sent, and replaced by
    /// the blocks received.
    public func alltoall<T: BitwiseCopyable>(inPlace buffer: inout [T]) throws(MPIError) {
        try buffer.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try alltoall(UnsafeBufferPointer(b), into: b) }
    }

    /// Starts an alltoall (MPI_Ialltoall) of `blocks` (`size` blocks of one count); the
    /// request gives the blocks received, by rank.
    public func ialltoall<T: BitwiseCopyable>(_ blocks: [[T]]) throws(MPIError) -> Request<[[T]]> {
        let n = blocks.first?.count ?? 0, p = size
        let input = OwnedBuffer(copying: blocks.flatMap { $0 })
        let output = OwnedBuffer(bytes: input.count)
        return try startCollective("ialltoall", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            guard blocks.count == p, blocks.allSatisfy({ $0.count == n }) else {
                throw MPIError(.count, "ialltoall: \(blocks.count) blocks of \(Set(blocks.map(\.count)).sorted()) elements; pass \(p) blocks of one count")
            }
            planAlltoall(s, block: n * MemoryLayout<T>.stride, inPlace: false)
        } finish: {
            let all = output.array(of: T.self, count: n * p)
            return (0..<p).map { Array(all[$0 * n ..< ($0 + 1) * n]) }
        }
    }

    func planAlltoall(_ s: Schedule, block: Int, inPlace: Bool) {
        switch Selection.choose(.alltoall, CallShape(bytes: block, ranks: size)) {
        case .pairwise:
            let blocks = Blocks(uniform: block)
            PairwiseAlltoall.plan(s, sending: blocks, receiving: blocks, from: inPlace ? copyOfInput(s, bytes: block * size) : .input())
        default: BruckAlltoall.plan(s, block: block)
        }
    }

    // MARK: alltoallv

    /// `sendCounts[r]` elements from `sendDisplacements[r]` of every member's `input` go to
    /// rank r, landing in its `output` at its `receiveDisplacements` of this rank with its
    /// `receiveCounts` of this rank (MPI_Alltoallv): rank r's `receiveCounts[q]` must be rank
    /// q's `sendCounts[r]`. Passing the same memory for both is the in-place form (the sends
    /// are taken from a copy).
    public func alltoallv<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, sendCounts: [Int], sendDisplacements: [Int],
                                              into output: UnsafeMutableBufferPointer<T>, receiveCounts: [Int], receiveDisplacements: [Int]) throws(MPIError) {
        let stride = MemoryLayout<T>.stride
        let inPlace = sameMemory(input, output)
        try runBlocking("alltoallv", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            try checkBlocks("alltoallv: the send", counts: sendCounts, displacements: sendDisplacements, fit: input.count)
            try checkBlocks("alltoallv: the receive", counts: receiveCounts, displacements: receiveDisplacements, fit: output.count)
            guard sendCounts[rank] == receiveCounts[rank] else {
                throw MPIError(.count, "alltoallv: this rank sends itself \(sendCounts[rank]) elements but receives \(receiveCounts[rank]) from itself")
            }
            var extent = 0
            for r in 0..<size { extent = max(extent, (sendDisplacements[r] + sendCounts[r]) * stride) }
            let sending = Blocks(counts: sendCounts.map { $0 * stride }, displacements: sendDisplacements.map { $0 * stride })
            let receiving = Blocks(counts: receiveCounts.map { $0 * stride }, displacements: receiveDisplacements.map { $0 * stride })
            planAlltoallv(s, sending: sending, receiving: receiving, from: inPlace ? copyOfInput(s, bytes: extent) : .input())
        }
    }

    /// Block r of every member's `blocks` (`size` blocks, any counts) to rank r; the result's
    /// block r comes from rank r (MPI_Alltoallv, with the counts exchanged by an alltoall first).
    public func alltoallv<T: BitwiseCopyable>(_ blocks: [[T]]) throws(MPIError) -> [[T]] {
        guard blocks.count == size else {
            // The others start with an alltoall of their counts: this rank fails that one.
            let e = MPIError(.count, "alltoallv: \(blocks.count) blocks for a communicator of \(size); pass one per rank")
            let counts = [Int](repeating: 0, count: size)
            var received = counts
            try counts.withUnsafeBufferPointer { (i) throws(MPIError) in
                try received.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try alltoall(i, into: o, refusing: e) }
            }
            throw e
        }
        let sendCounts = blocks.map(\.count)
        var receiveCounts = [Int](repeating: 0, count: size)
        try sendCounts.withUnsafeBufferPointer { (i) throws(MPIError) in
            try receiveCounts.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try alltoall(i, into: o) }
        }
        let (sendDisplacements, _) = packed(sendCounts)
        let (receiveDisplacements, total) = packed(receiveCounts)
        let flat = blocks.flatMap { $0 }
        var out = [T](unsafeUninitializedCapacity: total) { _, k in k = total }
        try flat.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in
                try alltoallv(i, sendCounts: sendCounts, sendDisplacements: sendDisplacements,
                              into: o, receiveCounts: receiveCounts, receiveDisplacements: receiveDisplacements)
            }
        }
        return (0..<size).map { Array(out[receiveDisplacements[$0] ..< receiveDisplacements[$0] + receiveCounts[$0]]) }
    }

    /// Starts an alltoallv (MPI_Ialltoallv) of `blocks` (`size` blocks, any counts):
    /// `receiveCounts[r]` is the count of rank r's block for this rank; the request gives
    /// the blocks received, by rank.
    public func ialltoallv<T: BitwiseCopyable>(_ blocks: [[T]], receiveCounts: [Int]) throws(MPIError) -> Request<[[T]]> {
        let stride = MemoryLayout<T>.stride, p = size
        let sendCounts = blocks.map(\.count)
        let (sendDisplacements, _) = packed(sendCounts)
        let (receiveDisplacements, total) = packed(receiveCounts)
        let input = OwnedBuffer(copying: blocks.flatMap { $0 })
        let output = OwnedBuffer(bytes: total * stride)
        return try startCollective("ialltoallv", input: input.pointer, output: output.pointer, keep: [input, output]) { s throws(MPIError) in
            try checkBlocks("ialltoallv: the send", counts: sendCounts, displacements: sendDisplacements, fit: input.count / max(stride, 1))
            try checkBlocks("ialltoallv: the receive", counts: receiveCounts, displacements: receiveDisplacements, fit: total)
            guard sendCounts[rank] == receiveCounts[rank] else {
                throw MPIError(.count, "ialltoallv: this rank sends itself \(sendCounts[rank]) elements but receives \(receiveCounts[rank]) from itself")
            }
            planAlltoallv(s, sending: Blocks(counts: sendCounts.map { $0 * stride }, displacements: sendDisplacements.map { $0 * stride }),
                          receiving: Blocks(counts: receiveCounts.map { $0 * stride }, displacements: receiveDisplacements.map { $0 * stride }),
                          from: .input())
        } finish: {
            let all = output.array(of: T.self, count: total)
            return (0..<p).map { Array(all[receiveDisplacements[$0] ..< receiveDisplacements[$0] + receiveCounts[$0]]) }
        }
    }

    func planAlltoallv(_ s: Schedule, sending: Blocks, receiving: Blocks, from: Place) {
        switch Selection.choose(.alltoallv, CallShape(bytes: 0, ranks: size)) {
        case .linear: LinearAlltoall.plan(s, sending: sending, receiving: receiving, from: from)
        default: PairwiseAlltoall.plan(s, sending: sending, receiving: receiving, from: from)
        }
    }

    // MARK: shared

    /// Whether a call's input and output are the same memory (the in-place form).
    func sameMemory<T>(_ input: UnsafeBufferPointer<T>, _ output: UnsafeMutableBufferPointer<T>) -> Bool {
        input.count > 0 && input.baseAddress == UnsafePointer(output.baseAddress)
    }

    /// Scratch holding a copy of the input's first `bytes`, made before any step (for
    /// algorithms that would overwrite what they still have to send, in place).
    func copyOfInput(_ s: Schedule, bytes: Int) -> Place {
        let at = s.scratch(bytes)
        s.copy(from: .input(), to: at, bytes: bytes)
        s.round()
        return at
    }

    /// Displacements of `counts` packed in rank order, and their total.
    @_spi(Testing) public func packed(_ counts: [Int]) -> ([Int], Int) {
        var out = [Int](repeating: 0, count: counts.count), total = 0
        for (r, c) in counts.enumerated() { out[r] = total; total += max(c, 0) }
        return (out, total)
    }

    /// Fails a collective call before it is planned, as a failing plan would: the call takes
    /// its sequence number and the other members hear of `e` rather than wait.
    func refuse(_ e: MPIError) throws(MPIError) -> Never {
        try ensureUsable()
        reportCollectiveFailure(e, sequence: nextSequence(), connecting: true)
        throw e
    }

    /// `value`'s encoding for the object path; a value that cannot be encoded fails the call
    /// on every member.
    func encodeForCollective<T: Encodable>(_ value: T, _ name: String) throws(MPIError) -> [UInt8] {
        do { return try BinaryCoding.encode(value) } catch {
            // The first collective of the object path (the lengths) fails everywhere.
            try refuse(MPIError(.other, "\(name): cannot encode \(T.self): \(error)"))
        }
    }

    func decodeFromCollective<T: Decodable>(_: T.Type, _ bytes: [UInt8], from r: Int) throws(MPIError) -> T {
        do { return try BinaryCoding.decode(T.self, from: bytes) } catch let e as MPIError { throw e } catch {
            throw MPIError(.other, "the value of \(describe(r)) is not a \(T.self): \(error)")
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
}
