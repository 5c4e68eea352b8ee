/// Reduce in two levels (Open MPI's HAN, Luo et al., Cluster 2020; MPICH's intra-node reduce
/// then inter-node reduce): each host reduces to its leader (the root on its own host, the
/// lowest rank elsewhere) with the flat algorithm, into scratch at a leader that is not the
/// root; then the leaders reduce their partial results to the root across the wire. One
/// contribution per host crosses the wire instead of one per rank.
///
/// Rank order holds when every host's ranks are consecutive (each partial result then covers
/// a contiguous range, and the leaders come in host order): a non-commutative operation goes
/// two levels only then (Selection.choose).
enum HostAwareReduce {
    static func plan(_ s: Schedule, elements: Int, root: Int, layout: HostLayout,
                     flat: (Schedule, Int) -> Void) {
        let bytes = elements * s.elementSize
        let me = s.comm.rank
        let leaders = layout.leaders(root: root)
        let mine = layout.hosts[layout.hostOf[me]]
        let leader = leaders[layout.hostOf[me]]
        // The host's partial result: the root's output, or scratch at another leader.
        let partial = me == leader && me != root ? s.scratch(bytes) : nil
        s.within(mine, output: partial) { flat(s, mine.firstIndex(of: leader)!) }
        guard me == leader else { return }
        s.within(leaders, onOutput: true, input: partial) { flat(s, layout.hostOf[root]) }
    }
}
