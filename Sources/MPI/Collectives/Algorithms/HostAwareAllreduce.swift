/// Allreduce in two levels (Open MPI's HAN, Luo et al., Cluster 2020; MPICH's composition
/// of an intra-node reduce, an inter-node allreduce and an intra-node bcast): each host
/// reduces to its leader (the lowest rank there) down a binomial tree over shared memory, the
/// leaders allreduce across the wire with the flat algorithm their count and the size call
/// for, and each leader broadcasts the result within its host. One contribution per host
/// crosses the wire instead of one per rank.
///
/// Rank order holds when every host's ranks are consecutive (hosts then come in rank order
/// and each partial result covers a contiguous range): a non-commutative operation goes two
/// levels only then.
enum HostAwareAllreduce {
    static func plan(_ s: Schedule, elements: Int, commutative: Bool, layout: HostLayout,
                     leadersAllreduce: (Schedule) -> Void) {
        let bytes = elements * s.elementSize
        let mine = layout.hosts[layout.hostOf[s.rank]]
        s.within(mine) { BinomialReduce.plan(s, elements: elements, root: 0, commutative: commutative) }
        let leaders = layout.leaders()
        if mine[0] == s.comm.rank { s.within(leaders, onOutput: true) { leadersAllreduce(s) } }
        s.within(mine, onOutput: true) { BinomialBcast.plan(s, bytes: bytes, root: 0) }
    }
}
