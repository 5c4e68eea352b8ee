/// Gather and gatherv straight to the root (MPICH's MPIR_Gatherv_allcomm_linear; Open MPI's
/// ompi_coll_base_gather_intra_basic_linear): every other rank sends its block to the root,
/// which posts all receives at once, each into its place in the output. One step with no
/// copies on the way: the choice for long blocks, and any counts and displacements.
enum LinearGather {
    /// The root's output gets rank r's block at `blocks.offset(r)`; a rank's own block, of
    /// `mine` bytes, is its input.
    static func plan(_ s: Schedule, blocks: Blocks, mine: Int, root: Int) {
        let p = s.size, me = s.rank
        if me == root {
            for r in 0..<p where r != root {
                s.receive(from: r, into: .output(blocks.offset(r)), bytes: blocks.bytes(r))
            }
            s.copy(from: .input(), to: .output(blocks.offset(root)), bytes: mine)
        } else {
            s.send(to: root, from: .input(), bytes: mine)
        }
        s.round()
    }
}
