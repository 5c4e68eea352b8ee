/// Reduce up a binomial tree (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005, section 4.4;
/// MPICH's MPIR_Reduce_intra_binomial): ranks relative to the tree's root; a rank combines
/// what the ranks below it in the tree send (the one differing in bit 0 first), then sends the
/// partial result to the rank that differs in its lowest set bit. ceil(log2 p) rounds of the
/// whole message: the choice for short messages.
///
/// A non-commutative operation runs the tree towards rank 0 on the ranks in their real order
/// (every partial result then covers a contiguous range of ranks, the lower one on the left),
/// and rank 0 sends the result to the root, as MPICH does.
enum BinomialReduce {
    /// The result of `elements` elements lands in the root's output; no other output is written.
    static func plan(_ s: Schedule, elements: Int, root: Int, commutative: Bool) {
        let bytes = elements * s.elementSize
        let p = s.size, me = s.rank
        guard p > 1 else {
            s.copy(from: .input(), to: .output(), bytes: bytes)
            s.round()
            return
        }
        let top = commutative ? root : 0
        let relative = (me - top + p) % p
        // The partial result: the input until the first child's part is combined with it.
        let acc: Place = me == root && top == root ? .output() : s.scratch(bytes)
        var current = Place.input()
        var tmp: Place?
        var mask = 1
        while mask < p {
            if relative & mask == 0 {
                let child = relative | mask
                if child < p {
                    let t = tmp ?? s.scratch(bytes)
                    tmp = t
                    s.receive(from: (child + top) % p, into: t, bytes: bytes)
                    s.reduce(current, t, into: acc, elements: elements)
                    s.round()
                    current = acc
                }
            } else {
                s.send(to: (relative & ~mask + top) % p, from: current, bytes: bytes)
                s.round()
                break
            }
            mask <<= 1
        }
        if top != root {
            if me == top {
                s.send(to: root, from: current, bytes: bytes)
            } else if me == root {
                s.receive(from: top, into: .output(), bytes: bytes)
            }
            s.round()
        }
    }
}
