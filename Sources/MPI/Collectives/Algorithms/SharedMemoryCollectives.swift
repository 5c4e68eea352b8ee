/// Barrier, broadcast, reduce and allreduce of short messages among ranks of one host,
/// through their shared segment (IntraHost) rather than the channel: in the spirit of Open
/// MPI's coll/xhc (Katevenis et al., Cluster 2022) and MPICH's release/gather collectives
/// (Jain et al., SC18): data of up to `IntraHost.slotBytes` is copied into the sender's slot,
/// flags with a single writer say what is there, every reader reads the slots it needs
/// directly. No message, no matching, no request: one store and one load per peer in the
/// common case.
///
/// Reductions are computed by every reader itself, from the slots in rank order (slot 0 op
/// slot 1 op ...), so a non-commutative operation is applied exactly in rank order and every
/// rank gets the same bits.
enum SharedMemoryCollectives {
    static func barrier(_ s: IntraHost) {
        let call = s.begin()
        s.publish(call)
        s.waitAll(call)
    }

    /// `buffer` (the root's) into every member's. A count that differs from the root's, or
    /// wrong arguments anywhere (`valid` false), fail the non-roots that read.
    static func bcast(_ s: IntraHost, _ buffer: UnsafeMutableRawPointer?, bytes: Int, root: Int) throws(MPIError) {
        let call = s.begin()
        if s.me == root {
            s.mayWrite(call)
            if bytes > 0 { s.slot(call, root).copyMemory(from: buffer!, byteCount: bytes) }
            s.declare(call, bytes: UInt64(bytes))
            s.publish(call)
        } else {
            s.wait(for: root, call)
            let theirs = s.declared(call, by: root)
            let ok = theirs == UInt64(bytes)
            if ok && bytes > 0 { buffer!.copyMemory(from: s.slot(call, root), byteCount: bytes) }
            s.publish(call) // done reading
            if !ok { throw s.mismatch("bcast", root, theirs: theirs, mine: bytes) }
        }
    }

    /// Every member's `input` combined into `output` at the root (`all`: at every member).
    /// `input` may be `output`. A member with `valid` false (its arguments were wrong)
    /// publishes nothing but that, and the others fail too; so do counts that differ.
    static func reduce(_ s: IntraHost, _ name: String, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?, elements: Int,
                       elementSize: Int, root: Int, all: Bool, valid: Bool = true,
                       _ op: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) throws(MPIError) {
        let call = s.begin()
        let bytes = elements * elementSize
        s.mayWrite(call)
        if valid && bytes > 0 { s.slot(call, s.me).copyMemory(from: input!, byteCount: bytes) }
        s.declare(call, bytes: valid ? UInt64(bytes) : IntraHost.invalid)
        s.publish(call)
        guard all || s.me == root else { return }
        s.waitAll(call)
        for r in 0..<s.ranks where r != s.me {
            let theirs = s.declared(call, by: r)
            if theirs != UInt64(bytes) && valid { throw s.mismatch(name, r, theirs: theirs, mine: bytes) }
        }
        guard bytes > 0, valid, let out = output else { return }
        op(s.slot(call, 0), s.slot(call, 1), out, elements)
        for r in 2..<max(s.ranks, 2) { op(out, s.slot(call, r), out, elements) }
    }
}
