/// All-to-all by pairwise exchange (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005,
/// section 4.6; MPICH's MPIR_Alltoall(v)_intra_pairwise): in step i (1 <= i < p) every rank
/// sends its block for rank me + i and receives the block of rank me - i, so each step is a
/// permutation and no rank is flooded; p - 1 steps of one block each: the choice for long
/// blocks, any p, and any counts (alltoallv).
enum PairwiseAlltoall {
    /// Rank r's block of `sending` (at `from`) goes to rank r; rank r's block lands in the
    /// output at `receiving`'s offset r.
    static func plan(_ s: Schedule, sending: Blocks, receiving: Blocks, from: Place = .input()) {
        let p = s.size, me = s.rank
        s.copy(from: from.advanced(by: sending.offset(me)), to: .output(receiving.offset(me)), bytes: receiving.bytes(me))
        s.round()
        for i in 1..<max(p, 1) {
            let to = (me + i) % p, source = (me - i + p) % p
            s.send(to: to, from: from.advanced(by: sending.offset(to)), bytes: sending.bytes(to))
            s.receive(from: source, into: .output(receiving.offset(source)), bytes: receiving.bytes(source))
            s.round()
        }
    }
}
