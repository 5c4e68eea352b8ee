/// Broadcast of long messages as a scatter followed by an allgather (van de Geijn et al.;
/// Thakur, Rabenseifner and Gropp, IJHPCA 19(1), 2005, section 4.1; MPICH's
/// MPIR_Bcast_intra_scatter_ring_allgather): the message is cut into p chunks of
/// ceil(bytes / p) (the last ones shorter or empty when p does not divide it); the root's
/// chunks go down a binomial tree, each rank ending with the chunk of its rank relative to
/// the root; then a ring allgather of the chunks. About 2 x bytes move per rank instead of
/// log2 p x bytes: the choice for long messages and p > 2.
enum ScatterAllgatherBcast {
    /// Broadcasts `bytes` at the output from `root`.
    static func plan(_ s: Schedule, bytes: Int, root: Int) {
        let p = s.size, me = s.rank
        guard p > 1 else { return }
        let relative = (me - root + p) % p
        let chunk = (bytes + p - 1) / p
        // Bytes of the chunks of relative ranks first..<end (clipped to the message).
        func span(_ first: Int, _ end: Int) -> Int { max(0, min(bytes, end * chunk) - min(bytes, first * chunk)) }
        func start(_ r: Int) -> Int { min(bytes, r * chunk) }

        // Binomial scatter: relative rank r receives the chunks of its subtree r..<r+lowbit(r).
        var mask = 1
        while mask < p {
            if relative & mask != 0 {
                s.receive(from: (relative - mask + root) % p, into: .output(start(relative)),
                          bytes: span(relative, min(relative + mask, p)))
                s.round()
                break
            }
            mask <<= 1
        }
        mask >>= 1
        while mask > 0 {
            let child = relative + mask
            if child < p {
                s.send(to: (child + root) % p, from: .output(start(child)), bytes: span(child, min(child + mask, p)))
            }
            mask >>= 1
        }
        s.round()

        // Ring allgather of the chunks, in relative ranks: every rank's own chunk is in place.
        var counts = [Int](repeating: 0, count: p), offsets = [Int](repeating: 0, count: p)
        for r in 0..<p {
            let rel = (r - root + p) % p
            counts[r] = span(rel, rel + 1)
            offsets[r] = start(rel)
        }
        RingAllgather.plan(s, blocks: Blocks(counts: counts, displacements: offsets), ownInPlace: true)
    }
}
