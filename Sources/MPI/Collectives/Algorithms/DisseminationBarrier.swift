/// Barrier by dissemination (Hensgen, Finkel and Manber, "Two algorithms for barrier
/// synchronization", IJPP 17(1), 1988; MPICH's MPIR_Barrier_intra_dissemination): in round k
/// every rank signals rank + 2^k and waits for rank - 2^k, so after ceil(log2 p) rounds
/// every rank has heard, directly or not, from every other. Messages carry no data.
enum DisseminationBarrier {
    static func plan(_ s: Schedule) {
        let p = s.size, me = s.rank
        var k = 1
        while k < p {
            s.send(to: (me + k) % p, from: .input(), bytes: 0)
            s.receive(from: (me - k + p) % p, into: .output(), bytes: 0)
            s.round()
            k <<= 1
        }
    }
}
