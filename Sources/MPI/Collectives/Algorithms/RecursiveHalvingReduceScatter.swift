/// Reduce-scatter by recursive halving (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005,
/// section 4.6; MPICH's MPIR_Reduce_scatter_intra_recursive_halving): in the step of `mask`
/// (p'/2, p'/4, ..., 1) each rank sends the half of its blocks its partner (new rank ^ mask)
/// keeps and combines the half it keeps with the partner's, so after log2 p' steps each holds
/// its own block; log2 p' rounds moving about n bytes: the choice for short and medium data.
///
/// Other than powers of two exactly, as MPICH: each of the first r = p - p' even ranks hands
/// all its data to the odd rank above it, which keeps both blocks in the halving (odd rank 2i
/// is new rank i, rank i + r above the first 2r is new rank i) and sends the even rank its
/// block at the end.
///
/// Partial results combine ranks that agree in their low bits, not contiguous ranges: for
/// commutative operations only (Selection falls back to pairwise for the others).
enum RecursiveHalvingReduceScatter {
    /// Rank r's block (`blocks`, packed in rank order, in bytes) of the combined input lands
    /// in rank r's output.
    static func plan(_ s: Schedule, blocks: Blocks) {
        let size = s.elementSize
        let p = s.size, me = s.rank
        let total = blocks.offset(p - 1) + blocks.bytes(p - 1)
        guard p > 1 else {
            s.copy(from: .input(blocks.offset(0)), to: .output(), bytes: blocks.bytes(0))
            s.round()
            return
        }
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let rem = p - pof2
        // The byte range of new ranks lo..<hi: from the first rank of lo to the last of hi - 1.
        func span(_ lo: Int, _ hi: Int) -> (offset: Int, bytes: Int) {
            let first = lo < rem ? 2 * lo : lo + rem
            let last = hi - 1 < rem ? 2 * (hi - 1) + 1 : hi - 1 + rem
            let from = blocks.offset(first)
            return (from, blocks.offset(last) + blocks.bytes(last) - from)
        }
        if me < 2 * rem && me % 2 == 0 {
            s.send(to: me + 1, from: .input(), bytes: total)
            s.round()
            s.receive(from: me + 1, into: .output(), bytes: blocks.bytes(me))
            s.round()
            return
        }
        let acc = s.scratch(total), tmp = s.scratch(total)
        var source = Place.input()
        if me < 2 * rem {
            s.receive(from: me - 1, into: tmp, bytes: total)
            s.reduce(tmp, .input(), into: acc, elements: total / size)
            s.round()
            source = acc
        }
        let n = me < 2 * rem ? me / 2 : me - rem
        var lo = 0, hi = pof2
        var mask = pof2 >> 1
        while mask > 0 {
            let partner = n ^ mask
            let peer = partner < rem ? partner * 2 + 1 : partner + rem
            let mid = lo + mask
            let keep = n & mask == 0 ? (lo, mid) : (mid, hi)
            let give = n & mask == 0 ? span(mid, hi) : span(lo, mid)
            let k = span(keep.0, keep.1)
            s.send(to: peer, from: source.advanced(by: give.offset), bytes: give.bytes)
            s.receive(from: peer, into: tmp.advanced(by: k.offset), bytes: k.bytes)
            s.reduce(tmp.advanced(by: k.offset), source.advanced(by: k.offset), into: acc.advanced(by: k.offset), elements: k.bytes / size)
            s.round()
            source = acc
            (lo, hi) = keep
            mask >>= 1
        }
        if me < 2 * rem {
            s.send(to: me - 1, from: acc.advanced(by: blocks.offset(me - 1)), bytes: blocks.bytes(me - 1))
        }
        s.copy(from: acc.advanced(by: blocks.offset(me)), to: .output(), bytes: blocks.bytes(me))
        s.round()
    }
}
