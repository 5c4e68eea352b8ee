/// Allgather by recursive doubling (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005,
/// section 4.3; MPICH's MPIR_Allgather_intra_recursive_doubling): in step k each rank
/// exchanges everything it has with the rank 2^k away, doubling it; log2 p steps for short
/// messages.
///
/// Other than powers of two, exactly and still in rank order: with p' the largest power of
/// two below p and r = p - p', the first 2r ranks pair up, each even rank hands its block to
/// the odd rank above it and waits, the p' ranks that remain double (each holding a
/// contiguous range of ranks' blocks, one or two per virtual rank), and the odd ranks hand
/// the whole result back: two extra steps, as in the recursive-doubling allreduce.
/// (MPICH instead lets the ranks of an incomplete subtree forward what others miss.)
///
/// Blocks of any size (allgatherv): ranges are contiguous in the output when the blocks lie
/// packed in rank order; with gaps between them the exchange works in packed scratch and
/// copies every block into place at the end.
enum RecursiveDoublingAllgather {
    /// Every rank's block, gathered into the output at the blocks' offsets; this rank's own
    /// block comes from the input (in place: the input is its place in the output).
    static func plan(_ s: Schedule, blocks: Blocks) {
        let p = s.size, me = s.rank
        let direct = blocks.contiguous(0, p) != nil
        let starts = PackedStarts(uniform: blocks.uniform, starts: blocks.packedStarts(p) { $0 })
        let base = direct ? Place.output(blocks.offset(0)) : s.scratch(starts[p])
        // The blocks of ranks a..<b, where they gather.
        func range(_ a: Int, _ b: Int) -> (Place, Int) { (base.advanced(by: starts[a]), starts[b] - starts[a]) }

        s.copy(from: .input(), to: base.advanced(by: starts[me]), bytes: blocks.bytes(me))
        s.round()
        guard p > 1 else { return }
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let r = p - pof2
        // The first rank of virtual rank v (v == pof2: p).
        func first(_ v: Int) -> Int { v < r ? 2 * v : v + r }
        var v = -1
        if me < 2 * r {
            if me % 2 == 0 {
                let (at, n) = range(me, me + 1)
                s.send(to: me + 1, from: at, bytes: n)
                s.round()
            } else {
                let (at, n) = range(me - 1, me)
                s.receive(from: me - 1, into: at, bytes: n)
                s.round()
                v = me / 2
            }
        } else {
            v = me - r
        }
        if v >= 0 {
            var mask = 1
            while mask < pof2 {
                let pv = v ^ mask
                let partner = pv < r ? 2 * pv + 1 : pv + r
                let mine = v & ~(mask - 1), theirs = pv & ~(mask - 1)
                let (sendAt, sendBytes) = range(first(mine), first(mine + mask))
                let (recvAt, recvBytes) = range(first(theirs), first(theirs + mask))
                s.send(to: partner, from: sendAt, bytes: sendBytes)
                s.receive(from: partner, into: recvAt, bytes: recvBytes)
                s.round()
                mask <<= 1
            }
        }
        if me < 2 * r {
            let (at, n) = range(0, p)
            if me % 2 == 1 { s.send(to: me - 1, from: at, bytes: n) } else { s.receive(from: me + 1, into: at, bytes: n) }
            s.round()
        }
        if !direct {
            for k in 0..<p {
                s.copy(from: base.advanced(by: starts[k]), to: .output(blocks.offset(k)), bytes: blocks.bytes(k))
            }
            s.round()
        }
    }
}
