/// Reduce for long messages by Rabenseifner's algorithm (Rabenseifner, ICCS 2004; Thakur,
/// Rabenseifner and Gropp, IJHPCA 19(1), 2005, section 4.4; MPICH's
/// MPIR_Reduce_intra_reduce_scatter_gather): a reduce-scatter by recursive halving (see
/// Rabenseifner), then a binomial gather of the blocks to the root, the halving's steps
/// undone in reverse order: 2 log2 p rounds, each rank moving about 2n bytes instead of
/// n log2 p.
///
/// Other than powers of two exactly, as MPICH: the even ranks of the first 2r sit out; when
/// the root is one of them, the gather goes to the odd rank above it (new rank root / 2),
/// which sends the result on to the root. Partial results are combined in rank order.
enum RabenseifnerReduce {
    /// The result of `elements` elements lands in the root's output; no other output is written.
    static func plan(_ s: Schedule, elements: Int, root: Int) {
        let size = s.elementSize, bytes = elements * size
        let p = s.size, me = s.rank
        guard p > 1 else {
            s.copy(from: .input(), to: .output(), bytes: bytes)
            s.round()
            return
        }
        let g = Rabenseifner.Layout(ranks: p, elements: elements)
        let acc: Place = me == root ? .output() : s.scratch(bytes)
        let n = Rabenseifner.reduceScatter(s, g, acc: acc, tmp: s.scratch(bytes))
        // Who gathers: the root, or the odd rank above it when the root sat out.
        let holder = root < 2 * g.rem && root % 2 == 0 ? root + 1 : root
        let newRoot = g.newRank(holder)
        if n >= 0 {
            // Still in the gather: agrees with newRoot on every bit above mask.
            var mask = g.pof2 >> 1
            while mask > 0 {
                let partner = n ^ mask
                let peer = g.rank(partner)
                if (n ^ newRoot) & mask == 0 {
                    let theirs = g.span(g.blocks(partner, through: mask), size)
                    s.receive(from: peer, into: acc.advanced(by: theirs.offset), bytes: theirs.bytes)
                    s.round()
                } else {
                    let mine = g.span(g.blocks(n, through: mask), size)
                    s.send(to: peer, from: acc.advanced(by: mine.offset), bytes: mine.bytes)
                    s.round()
                    break
                }
                mask >>= 1
            }
        }
        if holder != root {
            if me == holder {
                s.send(to: root, from: acc, bytes: bytes)
            } else if me == root {
                s.receive(from: holder, into: .output(), bytes: bytes)
            }
            s.round()
        }
    }
}
