/// A broadcast in two levels (Open MPI's HAN, Luo et al., Cluster 2020): the root, leading
/// its own host, broadcasts to one leader per other host across the wire, then every leader
/// broadcasts within its host over shared memory. Each phase is the flat broadcast the size
/// calls for.
enum HostAwareBcast {
    static func plan(_ s: Schedule, bytes: Int, root: Int, layout: HostLayout,
                     flat: (Schedule, Int, Int) -> Void) {
        let leaders = layout.leaders(root: root)
        let mine = layout.hosts[layout.hostOf[s.rank]]
        if leaders.contains(s.comm.rank) {
            s.within(leaders) { flat(s, bytes, leaders.firstIndex(of: root)!) }
        }
        let leader = leaders[layout.hostOf[s.comm.rank]]
        s.within(mine) { flat(s, bytes, mine.firstIndex(of: leader)!) }
    }
}
