/// Broadcast down a binomial tree (Thakur, Rabenseifner and Gropp, "Optimization of
/// collective communication operations in MPICH", IJHPCA 19(1), 2005, section 4.1;
/// MPICH's MPIR_Bcast_intra_binomial): ranks relative to the root; a rank receives from the
/// rank that differs in its lowest set bit, then sends to the ranks below it in the tree,
/// farthest first. ceil(log2 p) rounds of the whole message: the choice for short messages.
enum BinomialBcast {
    /// Broadcasts `bytes` at `place` (the output) from `root`.
    static func plan(_ s: Schedule, bytes: Int, root: Int, at place: Place = .output()) {
        let p = s.size
        let relative = (s.rank - root + p) % p
        var mask = 1
        while mask < p {
            if relative & mask != 0 {
                s.receive(from: (relative - mask + root) % p, into: place, bytes: bytes)
                s.round()
                break
            }
            mask <<= 1
        }
        mask >>= 1
        while mask > 0 {
            if relative + mask < p { s.send(to: (relative + mask + root) % p, from: place, bytes: bytes) }
            mask >>= 1
        }
        s.round()
    }
}
