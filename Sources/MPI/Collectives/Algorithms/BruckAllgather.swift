/// Allgather by Bruck's concatenation (Bruck, Ho, Kipnis, Upfal and Weathersby, "Efficient
/// algorithms for all-to-all communications in multiport message-passing systems", IEEE TPDS
/// 8(11), 1997; MPICH's MPIR_Allgather_intra_brucks): a rank keeps the blocks it has in
/// scratch in the order me, me + 1, ...; in step k it sends the first 2^k of them to rank
/// me - 2^k and appends the 2^k that rank me + 2^k sends; a last partial step brings the
/// p - 2^floor(log2 p) that are missing, and a rotation puts every block in its place.
/// ceil(log2 p) steps for any p: the choice for short messages when p is not a power of two.
/// Blocks may differ in size (allgatherv).
enum BruckAllgather {
    /// Every rank's block, gathered into the output at the blocks' offsets; this rank's own
    /// block comes from the input.
    static func plan(_ s: Schedule, blocks: Blocks) {
        let p = s.size, me = s.rank
        // Scratch position i holds the block of rank (me + i) % p.
        let starts = PackedStarts(uniform: blocks.uniform, starts: blocks.packedStarts(p) { (me + $0) % p })
        let tmp = s.scratch(starts[p])
        s.copy(from: .input(), to: tmp, bytes: blocks.bytes(me))
        s.round()
        var have = 1
        while have < p {
            let n = min(have, p - have)
            s.send(to: (me - have + p) % p, from: tmp, bytes: starts[n])
            s.receive(from: (me + have) % p, into: tmp.advanced(by: starts[have]), bytes: starts[have + n] - starts[have])
            s.round()
            have += n
        }
        // Undo the rotation: positions 0..<p-me are ranks me..<p, the rest ranks 0..<me.
        if blocks.contiguous(0, p) != nil {
            s.copy(from: tmp, to: .output(blocks.offset(me)), bytes: starts[p - me])
            s.copy(from: tmp.advanced(by: starts[p - me]), to: .output(blocks.offset(0)), bytes: starts[p] - starts[p - me])
        } else {
            for i in 0..<p {
                let r = (me + i) % p
                s.copy(from: tmp.advanced(by: starts[i]), to: .output(blocks.offset(r)), bytes: blocks.bytes(r))
            }
        }
        s.round()
    }
}
