/// Scan and exscan by recursive doubling (MPICH's MPIR_Scan_intra_recursive_doubling and
/// MPIR_Exscan_intra_recursive_doubling): in the step of `mask` (1, 2, 4, ...) each rank
/// exchanges the combination of its aligned group of `mask` ranks with rank ^ mask; what comes
/// from a lower rank joins the result (on the left) and the group's combination, what comes
/// from a higher one only the latter (on the right). ceil(log2 p) rounds; every partial result
/// covers a contiguous range of ranks, so a non-commutative operation is applied in rank
/// order.
enum RecursiveDoublingScan {
    /// The combination of ranks 0...me (`exclusive`: 0..<me; rank 0's output is not written)
    /// of `elements` elements lands in the output.
    static func plan(_ s: Schedule, elements: Int, exclusive: Bool) {
        let bytes = elements * s.elementSize
        let p = s.size, me = s.rank
        let partial = s.scratch(bytes), tmp = s.scratch(bytes)
        // The group's combination and the result so far: the input until written.
        // Each round updates `group` first: in place, the result overwrites the input.
        var group = Place.input()
        var result: Place? = exclusive ? nil : .input()
        var mask = 1
        while mask < p {
            let peer = me ^ mask
            if peer < p {
                s.send(to: peer, from: group, bytes: bytes)
                s.receive(from: peer, into: tmp, bytes: bytes)
                if peer < me {
                    s.reduce(tmp, group, into: partial, elements: elements)
                    if let r = result {
                        s.reduce(tmp, r, into: .output(), elements: elements)
                    } else {
                        s.copy(from: tmp, to: .output(), bytes: bytes)
                    }
                    result = .output()
                } else {
                    s.reduce(group, tmp, into: partial, elements: elements)
                }
                s.round()
                group = partial
            }
            mask <<= 1
        }
        if !exclusive, let r = result, r.space == .input {
            s.copy(from: .input(), to: .output(), bytes: bytes)
            s.round()
        }
    }
}
