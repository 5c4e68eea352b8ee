/// Gather up a binomial tree (MPICH's MPIR_Gather_intra_binomial; Thakur, Rabenseifner and
/// Gropp, IJHPCA 19(1), 2005): ranks relative to the root; relative rank r collects the
/// blocks of its subtree r..<r+lowbit(r) (its children's subtrees, received together into
/// scratch next to its own block) and sends them to its parent as one message. ceil(log2 p)
/// steps: the choice for short blocks. The root gathers straight into its output when it is
/// rank 0, else into scratch in relative order, rotated into place at the end.
enum BinomialGather {
    /// The root's output gets every rank's `block` bytes in rank order; each rank's own
    /// block is its input.
    static func plan(_ s: Schedule, block: Int, root: Int) {
        let p = s.size, me = s.rank
        let relative = (me - root + p) % p
        let subtree = relative == 0 ? p : min(relative & -relative, p - relative)
        if subtree == 1 {
            // A leaf sends its own block from where it is.
            if me != root { s.send(to: (relative - (relative & -relative) + root) % p, from: .input(), bytes: block) }
            else { s.copy(from: .input(), to: .output(), bytes: block) }
            s.round()
            return
        }
        // Where the subtree's blocks gather, in relative order.
        let direct = me == root && root == 0
        let buffer = direct ? Place.output() : s.scratch(subtree * block)
        var mask = 1
        while mask < subtree {
            let child = relative + mask
            if child < p {
                s.receive(from: (child + root) % p, into: buffer.advanced(by: mask * block), bytes: min(mask, p - child) * block)
            }
            mask <<= 1
        }
        s.copy(from: .input(), to: buffer, bytes: block)
        if me == root {
            if !direct {
                // Relative j is rank (j + root) % p.
                s.copy(from: buffer, to: .output(root * block), bytes: (p - root) * block)
                s.copy(from: buffer.advanced(by: (p - root) * block), to: .output(), bytes: root * block)
            }
            s.round()
        } else {
            s.round()
            s.send(to: (relative - (relative & -relative) + root) % p, from: buffer, bytes: subtree * block)
            s.round()
        }
    }
}
