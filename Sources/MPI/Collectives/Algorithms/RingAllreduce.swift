/// Allreduce around a ring (Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for
/// clusters of workstations", JPDC 69(2), 2009): the message is cut into p blocks (n / p
/// elements, the first n mod p one more); a reduce-scatter of p - 1 steps, in step i every
/// rank passes its partial block me - i to its right neighbour and combines block me - i - 1
/// from its left one, leaves block me + 1 complete on each rank; an allgather of p - 1 steps
/// around the same ring spreads them. 2(p - 1) steps of n / p: bandwidth-optimal for any p.
///
/// Partial blocks combine ranks in ring order, not rank order: for commutative operations
/// only (Selection falls back to recursive doubling for the others).
enum RingAllreduce {
    /// `output` holds the result of `elements` elements.
    static func plan(_ s: Schedule, elements: Int) {
        let size = s.elementSize
        let p = s.size, me = s.rank
        guard p > 1 else {
            s.copy(from: .input(), to: .output(), bytes: elements * size)
            s.round()
            return
        }
        let q = elements / p, extra = elements % p
        @inline(__always) func start(_ b: Int) -> Int { b * q + min(b, extra) }
        @inline(__always) func count(_ b: Int) -> Int { q + (b < extra ? 1 : 0) }
        let tmp = s.scratch(count(0) * size)
        let right = (me + 1) % p, left = (me - 1 + p) % p
        for i in 0..<(p - 1) {
            let out = (me - i + p) % p, into = (me - i - 1 + p) % p
            // Block `out` is this rank's input in the first step, a partial result after.
            s.send(to: right, from: (i == 0 ? Place.input() : .output()).advanced(by: start(out) * size), bytes: count(out) * size)
            s.receive(from: left, into: tmp, bytes: count(into) * size)
            // Block `into` is combined here once: this rank's part of it is still its input.
            s.reduce(tmp, .input(start(into) * size), into: .output(start(into) * size), elements: count(into))
            s.round()
        }
        for i in 0..<(p - 1) {
            let out = (me + 1 - i + p) % p, into = (me - i + p) % p
            s.send(to: right, from: .output(start(out) * size), bytes: count(out) * size)
            s.receive(from: left, into: .output(start(into) * size), bytes: count(into) * size)
            s.round()
        }
    }
}
