/// A barrier in two levels, for communicators over several hosts (the node-aware scheme of
/// Open MPI's HAN, Luo et al., Cluster 2020, and MPICH's composition algorithms): every rank
/// reports to its host's leader over shared memory, the leaders run a dissemination barrier
/// across hosts, and each leader releases its host down a binomial tree. Only one message per
/// host crosses the wire each round.
enum HostAwareBarrier {
    static func plan(_ s: Schedule, layout: HostLayout) {
        let mine = layout.hosts[layout.hostOf[s.rank]]
        s.within(mine) {
            if s.rank == 0 {
                for r in 1..<mine.count { s.receive(from: r, into: .output(), bytes: 0) }
            } else {
                s.send(to: 0, from: .input(), bytes: 0)
            }
            s.round()
        }
        let leaders = layout.leaders()
        if leaders.contains(s.comm.rank) { s.within(leaders) { DisseminationBarrier.plan(s) } }
        s.within(mine) { BinomialBcast.plan(s, bytes: 0, root: 0) }
    }
}
