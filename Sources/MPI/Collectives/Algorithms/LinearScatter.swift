/// Scatter and scatterv straight from the root (MPICH's MPIR_Scatterv_allcomm_linear; Open
/// MPI's ompi_coll_base_scatter_intra_basic_linear): the root posts one send per rank, each
/// from that rank's place in its input. One step with no copies on the way: the choice for
/// long blocks, and any counts and displacements.
enum LinearScatter {
    /// Rank r's output gets the root's bytes at `blocks.offset(r)`; a rank's own block is
    /// `mine` bytes of its output.
    static func plan(_ s: Schedule, blocks: Blocks, mine: Int, root: Int) {
        let p = s.size, me = s.rank
        if me == root {
            for r in 0..<p where r != root {
                s.send(to: r, from: .input(blocks.offset(r)), bytes: blocks.bytes(r))
            }
            s.copy(from: .input(blocks.offset(root)), to: .output(), bytes: mine)
        } else {
            s.receive(from: root, into: .output(), bytes: mine)
        }
        s.round()
    }
}
