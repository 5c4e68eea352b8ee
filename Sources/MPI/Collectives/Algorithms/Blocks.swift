/// The blocks of a gathering collective, one per rank, in bytes: all alike (gather,
/// allgather, alltoall) without any array, or each its own count and displacement (the v
/// forms).
struct Blocks {
    let uniform: Int
    let counts: [Int]?
    let displacements: [Int]?

    /// `bytes` each, packed in rank order.
    init(uniform bytes: Int) {
        uniform = bytes
        counts = nil
        displacements = nil
    }

    /// Counts and displacements in bytes.
    init(counts: [Int], displacements: [Int]) {
        uniform = 0
        self.counts = counts
        self.displacements = displacements
    }

    @inline(__always) func bytes(_ r: Int) -> Int { counts?[r] ?? uniform }
    @inline(__always) func offset(_ r: Int) -> Int { displacements?[r] ?? r * uniform }

    /// Bytes of ranks `first..<first+n` when they lie packed one after another (true of
    /// uniform blocks and of packed v blocks), else nil.
    func contiguous(_ first: Int, _ n: Int) -> (offset: Int, bytes: Int)? {
        guard n > 0 else { return (offset(first), 0) }
        var end = offset(first)
        for r in first..<(first + n) {
            guard offset(r) == end else { return nil }
            end += bytes(r)
        }
        return (offset(first), end - offset(first))
    }
}

extension Blocks {
    /// Where the blocks of ranks `order(0), order(1), ...` start when packed one after another
    /// in that order (`p + 1` offsets, the last one the total): nil for uniform blocks, whose
    /// k-th starts at `k * uniform` whatever the order.
    func packedStarts(_ p: Int, order: (Int) -> Int) -> [Int]? {
        guard counts != nil else { return nil }
        var out = [Int](repeating: 0, count: p + 1)
        for k in 0..<p { out[k + 1] = out[k] + bytes(order(k)) }
        return out
    }
}

/// Offsets of blocks packed one after another: `starts[k]`, or `k * uniform` for uniform
/// blocks (no array).
struct PackedStarts {
    let uniform: Int
    let starts: [Int]?
    @inline(__always) subscript(_ k: Int) -> Int { starts?[k] ?? k * uniform }
}
