/// Gather in two levels (Open MPI's HAN, Luo et al., Cluster 2020): each host gathers its
/// ranks' blocks to its leader (the root on its own host, the lowest rank elsewhere) with the
/// flat algorithm, into scratch; the leaders then send their host's blocks to the root, one
/// message per host across the wire instead of one per rank; the root puts every block in
/// its rank's place.
enum HostAwareGather {
    static func plan(_ s: Schedule, block: Int, root: Int, layout: HostLayout, flat: (Schedule, Int) -> Void) {
        let me = s.comm.rank
        let leaders = layout.leaders(root: root)
        let h = layout.hostOf[me]
        let mine = layout.hosts[h]
        let leader = leaders[h]
        // The host's blocks, in the order of its ranks, at its leader.
        let hostBlocks = me == leader ? s.scratch(mine.count * block) : nil
        s.within(mine, output: hostBlocks) { flat(s, mine.firstIndex(of: leader)!) }
        guard me == leader else { return }
        if me != root {
            s.within(leaders) { s.send(to: layout.hostOf[root], from: hostBlocks!, bytes: mine.count * block) }
            s.round()
            return
        }
        // The root: every other host's blocks into scratch, then each block to its place.
        var arriving: [(host: Int, at: Place)] = [(h, hostBlocks!)]
        s.within(leaders) {
            for (k, ranks) in layout.hosts.enumerated() where k != h {
                let at = s.scratch(ranks.count * block)
                s.receive(from: k, into: at, bytes: ranks.count * block)
                arriving.append((k, at))
            }
        }
        s.round()
        for (k, at) in arriving {
            for (j, r) in layout.hosts[k].enumerated() { s.copy(from: at.advanced(by: j * block), to: .output(r * block), bytes: block) }
        }
        s.round()
    }
}
