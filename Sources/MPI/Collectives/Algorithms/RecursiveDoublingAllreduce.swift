/// Allreduce by recursive doubling (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005,
/// section 4.5; MPICH's MPIR_Allreduce_intra_recursive_doubling): in round k each rank
/// exchanges its whole partial result with the rank 2^k away and combines the two;
/// log2 p rounds for short messages.
///
/// Other than powers of two, exactly (no rank counted twice): with p' the largest power of
/// two below p and r = p - p', the first 2r ranks pair up, each even rank hands its data to
/// the odd rank above it and sits out, the p' that remain double, and the odd ranks hand the
/// result back. Every partial result covers a contiguous range of ranks and is combined with
/// the lower range first, so a non-commutative operation is applied in rank order.
enum RecursiveDoublingAllreduce {
    /// `output` holds the result of `elements` elements (input copied there first unless in place).
    static func plan(_ s: Schedule, elements: Int) {
        let bytes = elements * s.elementSize
        let p = s.size, me = s.rank
        s.copy(from: .input(), to: .output(), bytes: bytes)
        s.round()
        guard p > 1 else { return }
        let tmp = s.scratch(bytes)
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let r = p - pof2
        var newRank: Int
        if me < 2 * r {
            if me % 2 == 0 {
                s.send(to: me + 1, from: .output(), bytes: bytes)
                s.round()
                newRank = -1
            } else {
                s.receive(from: me - 1, into: tmp, bytes: bytes)
                s.reduce(tmp, .output(), into: .output(), elements: elements)
                s.round()
                newRank = me / 2
            }
        } else {
            newRank = me - r
        }
        if newRank >= 0 {
            var mask = 1
            while mask < pof2 {
                let partnerNew = newRank ^ mask
                let partner = partnerNew < r ? partnerNew * 2 + 1 : partnerNew + r
                s.send(to: partner, from: .output(), bytes: bytes)
                s.receive(from: partner, into: tmp, bytes: bytes)
                if partner < me {
                    s.reduce(tmp, .output(), into: .output(), elements: elements)
                } else {
                    s.reduce(.output(), tmp, into: .output(), elements: elements)
                }
                s.round()
                mask <<= 1
            }
        }
        if me < 2 * r {
            if me % 2 == 1 {
                s.send(to: me - 1, from: .output(), bytes: bytes)
            } else {
                s.receive(from: me + 1, into: .output(), bytes: bytes)
            }
            s.round()
        }
    }
}
