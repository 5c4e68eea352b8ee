/// The reduce-scatter half of Rabenseifner's algorithms (Rabenseifner, "Optimization of
/// collective reduction operations", ICCS 2004; Thakur, Rabenseifner and Gropp, IJHPCA 19(1),
/// 2005, section 4.5; MPICH's MPIR_Allreduce_intra_reduce_scatter_allgather and
/// MPIR_Reduce_intra_reduce_scatter_gather), shared by RabenseifnerReduce and
/// RabenseifnerAllreduce.
///
/// Other than powers of two, exactly (no rank counted twice): with p' the largest power of two
/// not above p and r = p - p', each of the first r even ranks hands its data to the odd rank
/// above it and sits out; the p' that remain take new ranks (odd rank 2i is new rank i, rank
/// i + r above the first 2r is new rank i). Then recursive halving: in the step of `mask`
/// (1, 2, 4, ...) a new rank sends the half of its blocks the partner keeps and combines the
/// other half with the partner's; a new rank with bit `mask` clear keeps the lower half. The
/// message is cut into p' blocks of n / p' elements (the first n mod p' one more).
///
/// Every partial result covers a contiguous range of ranks (an aligned range of new ranks,
/// and new ranks are in rank order), combined with the lower range on the left: a
/// non-commutative operation is applied in rank order.
enum Rabenseifner {
    struct Layout {
        let pof2: Int
        let rem: Int
        let elements: Int

        init(ranks p: Int, elements n: Int) {
            var q = 1
            while q * 2 <= p { q *= 2 }
            pof2 = q
            rem = p - q
            elements = n
        }

        /// The new rank of `rank`, or -1 for an even rank that sits out.
        @inline(__always) func newRank(_ rank: Int) -> Int {
            rank < 2 * rem ? (rank % 2 == 0 ? -1 : rank / 2) : rank - rem
        }

        /// The rank of new rank `n`.
        @inline(__always) func rank(_ n: Int) -> Int { n < rem ? n * 2 + 1 : n + rem }

        /// The first element of block `b` (of pof2).
        @inline(__always) func start(_ b: Int) -> Int { b * (elements / pof2) + min(b, elements % pof2) }

        /// The blocks `lo..<hi` new rank `n` holds after the halving steps of masks up to
        /// `mask` (0: before any, all of them).
        func blocks(_ n: Int, through mask: Int) -> (lo: Int, hi: Int) {
            var lo = 0, hi = pof2, m = 1
            while m <= mask {
                let mid = (lo + hi) / 2
                if n & m == 0 { hi = mid } else { lo = mid }
                m <<= 1
            }
            return (lo, hi)
        }

        /// Byte offset and byte count of blocks `lo..<hi`.
        @inline(__always) func span(_ b: (lo: Int, hi: Int), _ size: Int) -> (offset: Int, bytes: Int) {
            (start(b.lo) * size, (start(b.hi) - start(b.lo)) * size)
        }
    }

    /// Plans the fold and the recursive halving. Afterwards a new rank `n` holds, in `acc`,
    /// the combination of every rank's blocks `g.blocks(n, through: g.pof2 / 2)`; returns `n`
    /// (-1 for a rank that sat out). `tmp` takes a whole message.
    static func reduceScatter(_ s: Schedule, _ g: Layout, acc: Place, tmp: Place) -> Int {
        let me = s.rank, size = s.elementSize
        let bytes = g.elements * size
        let n = g.newRank(me)
        // Where this rank's partial result is: its input until something is combined with it.
        var source = Place.input()
        if me < 2 * g.rem {
            if n < 0 {
                s.send(to: me + 1, from: .input(), bytes: bytes)
                s.round()
                return -1
            }
            s.receive(from: me - 1, into: tmp, bytes: bytes)
            s.reduce(tmp, .input(), into: acc, elements: g.elements)
            s.round()
            source = acc
        }
        var mask = 1
        while mask < g.pof2 {
            let (lo, hi) = g.blocks(n, through: mask >> 1)
            let mid = (lo + hi) / 2
            let partner = n ^ mask
            let keep = n & mask == 0 ? (lo, mid) : (mid, hi)
            let give = n & mask == 0 ? (mid, hi) : (lo, mid)
            let k = g.span(keep, size), out = g.span(give, size)
            let peer = g.rank(partner)
            s.send(to: peer, from: source.advanced(by: out.offset), bytes: out.bytes)
            s.receive(from: peer, into: tmp.advanced(by: k.offset), bytes: k.bytes)
            if partner < n {
                s.reduce(tmp.advanced(by: k.offset), source.advanced(by: k.offset), into: acc.advanced(by: k.offset), elements: k.bytes / size)
            } else {
                s.reduce(source.advanced(by: k.offset), tmp.advanced(by: k.offset), into: acc.advanced(by: k.offset), elements: k.bytes / size)
            }
            s.round()
            source = acc
            mask <<= 1
        }
        if g.pof2 == 1 && g.rem == 0 {
            s.copy(from: .input(), to: acc, bytes: bytes)
            s.round()
        }
        return n
    }
}
