/// All-to-all by Bruck's index algorithm (Bruck, Ho, Kipnis, Upfal and Weathersby, IEEE TPDS
/// 8(11), 1997; MPICH's MPIR_Alltoall_intra_brucks): a local rotation puts the block for rank
/// me + i at position i; in step k every block whose position has bit k set is packed and
/// sent to rank me + 2^k (and what rank me - 2^k sends unpacked into the same positions);
/// after ceil(log2 p) steps position i holds the block from rank me - i, and an inverse
/// rotation puts it in place. About (p/2) log2 p blocks move per rank instead of p - 1, in
/// log2 p messages instead of p - 1: the choice for short blocks and many ranks.
enum BruckAlltoall {
    /// `block` bytes from every rank to every rank: the input's block r goes to rank r, the
    /// output's block r comes from rank r. Safe in place (the input is read before the output
    /// is written).
    static func plan(_ s: Schedule, block: Int) {
        let p = s.size, me = s.rank
        let tmp = s.scratch(p * block)
        // Position i: the block for rank (me + i) % p.
        s.copy(from: .input(me * block), to: tmp, bytes: (p - me) * block)
        s.copy(from: .input(), to: tmp.advanced(by: (p - me) * block), bytes: me * block)
        let half = (p / 2 + 1) * block
        let outgoing = s.scratch(half), incoming = s.scratch(half)
        var bit = 1
        while bit < p {
            // Pack (a local step of the round before: it runs before this round's send).
            var n = 0
            for i in 0..<p where i & bit != 0 {
                s.copy(from: tmp.advanced(by: i * block), to: outgoing.advanced(by: n * block), bytes: block)
                n += 1
            }
            s.round()
            s.send(to: (me + bit) % p, from: outgoing, bytes: n * block)
            s.receive(from: (me - bit + p) % p, into: incoming, bytes: n * block)
            var k = 0
            for i in 0..<p where i & bit != 0 {
                s.copy(from: incoming.advanced(by: k * block), to: tmp.advanced(by: i * block), bytes: block)
                k += 1
            }
            bit <<= 1
        }
        // Output block j (from rank j) is at position (me - j + p) % p.
        for j in 0..<p {
            s.copy(from: tmp.advanced(by: ((me - j + p) % p) * block), to: .output(j * block), bytes: block)
        }
        s.round()
    }
}
