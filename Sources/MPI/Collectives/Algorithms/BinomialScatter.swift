/// Scatter down a binomial tree (MPICH's MPIR_Scatter_intra_binomial; Thakur, Rabenseifner
/// and Gropp, IJHPCA 19(1), 2005): the reverse of the binomial gather. Ranks relative to the
/// root; relative rank r receives the blocks of its subtree r..<r+lowbit(r) from its parent
/// as one message, keeps its own and sends each child its subtree's. ceil(log2 p) steps: the
/// choice for short blocks. The root sends straight from its input when it is rank 0, else
/// from a copy in relative order.
enum BinomialScatter {
    /// Every rank's output gets its `block` bytes of the root's input (blocks in rank order).
    static func plan(_ s: Schedule, block: Int, root: Int) {
        let p = s.size, me = s.rank
        let relative = (me - root + p) % p
        let subtree = relative == 0 ? p : min(relative & -relative, p - relative)
        let parent = (relative - (relative & -relative) + root) % p
        if subtree == 1 {
            if me != root { s.receive(from: parent, into: .output(), bytes: block) }
            else { s.copy(from: .input(), to: .output(), bytes: block) }
            s.round()
            return
        }
        // Where the subtree's blocks are, in relative order.
        let buffer: Place
        if me == root {
            if root == 0 {
                buffer = .input()
            } else {
                buffer = s.scratch(p * block)
                s.copy(from: .input(root * block), to: buffer, bytes: (p - root) * block)
                s.copy(from: .input(), to: buffer.advanced(by: (p - root) * block), bytes: root * block)
            }
            s.round()
        } else {
            buffer = s.scratch(subtree * block)
            s.receive(from: parent, into: buffer, bytes: subtree * block)
            s.round()
        }
        var mask = 1
        while mask < subtree {
            let child = relative + mask
            if child < p {
                s.send(to: (child + root) % p, from: buffer.advanced(by: mask * block), bytes: min(mask, p - child) * block)
            }
            mask <<= 1
        }
        s.copy(from: me == root ? .input(root * block) : buffer, to: .output(), bytes: block)
        s.round()
    }
}
