/// Allreduce for long messages by Rabenseifner's algorithm (Rabenseifner, ICCS 2004; Thakur,
/// Rabenseifner and Gropp, IJHPCA 19(1), 2005, section 4.5; MPICH's
/// MPIR_Allreduce_intra_reduce_scatter_allgather): a reduce-scatter by recursive halving (see
/// Rabenseifner), then an allgather by recursive doubling, the halving's steps undone in
/// reverse order: 2 log2 p rounds, each rank moving about 2n bytes.
///
/// Other than powers of two exactly: the even ranks of the first 2r hand their data to the
/// odd rank above them first and get the result from it last. Partial results are combined
/// in rank order, so a non-commutative operation is applied in rank order.
enum RabenseifnerAllreduce {
    /// `output` holds the result of `elements` elements.
    static func plan(_ s: Schedule, elements: Int) {
        let size = s.elementSize, bytes = elements * size
        let p = s.size, me = s.rank
        guard p > 1 else {
            s.copy(from: .input(), to: .output(), bytes: bytes)
            s.round()
            return
        }
        let g = Rabenseifner.Layout(ranks: p, elements: elements)
        let n = Rabenseifner.reduceScatter(s, g, acc: .output(), tmp: s.scratch(bytes))
        if n >= 0 {
            var mask = g.pof2 >> 1
            while mask > 0 {
                let partner = n ^ mask
                let peer = g.rank(partner)
                let mine = g.span(g.blocks(n, through: mask), size)
                let theirs = g.span(g.blocks(partner, through: mask), size)
                s.send(to: peer, from: .output(mine.offset), bytes: mine.bytes)
                s.receive(from: peer, into: .output(theirs.offset), bytes: theirs.bytes)
                s.round()
                mask >>= 1
            }
        }
        if me < 2 * g.rem {
            if n >= 0 {
                s.send(to: me - 1, from: .output(), bytes: bytes)
            } else {
                s.receive(from: me + 1, into: .output(), bytes: bytes)
            }
            s.round()
        }
    }
}
