/// Reduce-scatter by pairwise exchange (Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005,
/// section 4.6; MPICH's MPIR_Reduce_scatter_intra_pairwise): in step i (1 ..< p) every rank
/// sends rank me + i its block of the input and takes its own block's part from rank me - i.
/// p - 1 rounds, each rank moving about n bytes in messages of one block: the choice for long
/// data.
///
/// For any operation: the parts come from me - 1, me - 2, ..., 0, then p - 1, ..., me + 1, so
/// two partial results grow downwards, ranks 0...me (each new part on the left) and
/// me + 1 ..< p; the two are combined last, lower on the left: rank order, exactly.
enum PairwiseReduceScatter {
    /// Rank r's block (`blocks`, packed in rank order, in bytes) of the combined input lands
    /// in rank r's output (which may be the input: the result goes to its start).
    static func plan(_ s: Schedule, blocks: Blocks) {
        let size = s.elementSize
        let p = s.size, me = s.rank
        let mine = blocks.bytes(me), elements = mine / size
        // In place the output's start is other ranks' input, still to be sent: combine aside.
        let inPlace = s.input != nil && s.input == UnsafeRawPointer(s.output)
        let lower: Place = inPlace ? s.scratch(mine) : .output()
        let upper = s.scratch(mine), tmp = s.scratch(mine)
        var left = Place.input(blocks.offset(me))
        var haveUpper = false
        for i in 1..<max(p, 1) {
            let from = (me - i + p) % p, to = (me + i) % p
            s.send(to: to, from: .input(blocks.offset(to)), bytes: blocks.bytes(to))
            if from < me {
                s.receive(from: from, into: tmp, bytes: mine)
                s.reduce(tmp, left, into: lower, elements: elements)
                left = lower
            } else if !haveUpper {
                s.receive(from: from, into: upper, bytes: mine)
                haveUpper = true
            } else {
                s.receive(from: from, into: tmp, bytes: mine)
                s.reduce(tmp, upper, into: upper, elements: elements)
            }
            s.round()
        }
        if haveUpper {
            s.reduce(left, upper, into: .output(), elements: elements)
        } else {
            s.copy(from: left, to: .output(), bytes: mine)
        }
        s.round()
    }
}
