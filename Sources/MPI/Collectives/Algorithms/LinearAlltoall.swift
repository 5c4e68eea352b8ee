/// All-to-all with every message posted at once (MPICH's MPIR_Alltoallv_intra_scattered
/// with an unbounded window; Open MPI's ompi_coll_base_alltoallv_intra_basic_linear): one
/// step of p - 1 sends and p - 1 receives, the channel left to order them. Fewest rounds for
/// medium blocks, at the price of every rank being sent to by all at once.
enum LinearAlltoall {
    /// Rank r's block of `sending` (at `from`) goes to rank r; rank r's block lands in the
    /// output at `receiving`'s offset r.
    static func plan(_ s: Schedule, sending: Blocks, receiving: Blocks, from: Place = .input()) {
        let p = s.size, me = s.rank
        for i in 1..<max(p, 1) {
            let to = (me + i) % p, source = (me - i + p) % p
            s.receive(from: source, into: .output(receiving.offset(source)), bytes: receiving.bytes(source))
            s.send(to: to, from: from.advanced(by: sending.offset(to)), bytes: sending.bytes(to))
        }
        s.copy(from: from.advanced(by: sending.offset(me)), to: .output(receiving.offset(me)), bytes: receiving.bytes(me))
        s.round()
    }
}
