/// Allgather around a ring (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005, section 4.3;
/// MPICH's MPIR_Allgather(v)_intra_ring): in step i every rank passes the block it received
/// in step i - 1 to its right neighbour and takes the next from its left; p - 1 steps, each
/// of one block: bandwidth-optimal for long messages and any p. Blocks may differ in size
/// (allgatherv).
enum RingAllgather {
    /// Every rank's block, gathered into the output at the blocks' offsets; this rank's own
    /// block comes from the input, or is in the output already with `ownInPlace`.
    static func plan(_ s: Schedule, blocks: Blocks, ownInPlace: Bool = false) {
        let p = s.size, me = s.rank
        if !ownInPlace {
            s.copy(from: .input(), to: .output(blocks.offset(me)), bytes: blocks.bytes(me))
            s.round()
        }
        let right = (me + 1) % p, left = (me - 1 + p) % p
        for i in 0..<max(p - 1, 0) {
            let out = (me - i + p) % p, into = (me - i - 1 + p) % p
            s.send(to: right, from: .output(blocks.offset(out)), bytes: blocks.bytes(out))
            s.receive(from: left, into: .output(blocks.offset(into)), bytes: blocks.bytes(into))
            s.round()
        }
    }
}
