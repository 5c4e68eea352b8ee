import CMyriXen

/// Barrier, broadcast, allreduce and alltoall of short messages among ranks of one host,
/// through their shared segment (IntraHost) rather than the channel: in the spirit of Open
/// MPI's coll/xhc (Katevenis et al., Cluster 2022) and MPICH's release/gather collectives
/// (Jain et al., SC18): data of up to `IntraHost.shortBytes` is copied into the sender's slot,
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
            if bytes > 0 { s.data(call, root, bytes: bytes).copyMemory(from: buffer!, byteCount: bytes) }
            s.declare(call, bytes: UInt64(bytes))
            s.publish(call)
        } else {
            // Done with every call before this one: said first, so the store drains while
            // this rank waits for the root (the root only ever needs calls before the last).
            s.publish(call)
            s.wait(for: root, call)
            let theirs = s.declared(call, by: root)
            let ok = theirs == UInt64(bytes)
            if ok && bytes > 0 { buffer!.copyMemory(from: s.data(call, root, bytes: bytes), byteCount: bytes) }
            if !ok { throw s.mismatch("bcast", root, theirs: theirs, mine: bytes) }
        }
    }

    /// A long broadcast in one copy (Open MPI's XHC past its copy-in-copy-out threshold):
    /// the root publishes where its buffer is; every other rank reads it straight from the
    /// root's memory (process_vm_readv) and publishes that it is done; the root returns once
    /// all are, since its caller may then change the buffer.
    static func bcastLong(_ s: IntraHost, _ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws(MPIError) {
        let call = s.begin()
        let place = s.flag(s.me) + 32 + Int(call & 1) * IntraHost.inlineBytes
        if s.me == root {
            s.mayWrite(call)
            cmx_store_relaxed_u64(place, UInt64(UInt(bitPattern: buffer)))
            s.declare(call, bytes: UInt64(bytes))
            s.publish(call)
            s.waitAll(call)
        } else {
            s.wait(for: root, call)
            let theirs = s.declared(call, by: root)
            var failure: MPIError?
            if theirs == UInt64(bytes) {
                let address = cmx_load_relaxed_u64(s.flag(root) + 32 + Int(call & 1) * IntraHost.inlineBytes)
                do { try s.read(from: root, address: address, bytes: bytes, into: buffer) } catch { failure = error }
            } else {
                failure = s.mismatch("bcast", root, theirs: theirs, mine: bytes)
            }
            s.publish(call) // done reading: the root may return
            if let e = failure { throw e }
        }
    }

    /// Block r of every member's `input` to rank r, all at once: every rank copies its
    /// blocks into its slot, publishes, waits for all, and copies block `me` of every slot
    /// into its output. `input` may be `output`. Counts are declared and compared.
    /// `invalid`: what this rank's arguments are wrong in (nil: they are right).
    static func alltoall(_ s: IntraHost, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?, block: Int,
                         invalid: UInt64?) throws(MPIError) {
        let call = s.begin()
        let bytes = block * s.ranks
        let valid = invalid == nil
        s.mayWrite(call)
        if valid && bytes > 0 { s.data(call, s.me, bytes: bytes).copyMemory(from: input!, byteCount: bytes) }
        s.declare(call, bytes: invalid ?? UInt64(bytes))
        s.publish(call)
        s.waitAll(call)
        for r in 0..<s.ranks where r != s.me {
            let theirs = s.declared(call, by: r)
            if theirs != UInt64(bytes) && valid {
                s.keepInStepWithLongPath(call)
                throw s.mismatch("alltoall", r, theirs: theirs, mine: bytes)
            }
        }
        guard valid, block > 0, let out = output else { return }
        for r in 0..<s.ranks { (out + r * block).copyMemory(from: s.data(call, r, bytes: bytes) + s.me * block, byteCount: block) }
    }

    /// A long alltoall in one copy per block: every rank publishes where its input is, reads
    /// its block of every other rank's input straight from that rank's memory
    /// (process_vm_readv), then, in a second call, says it is done and waits until all are
    /// (its caller may change its input once it returns). Not in place: the others read the
    /// input while the output is written.
    static func alltoallLong(_ s: IntraHost, input: UnsafeRawPointer, output: UnsafeMutableRawPointer, block: Int,
                             invalid: UInt64?) throws(MPIError) {
        let call = s.begin()
        let bytes = block * s.ranks
        let place = s.flag(s.me) + 32 + Int(call & 1) * IntraHost.inlineBytes
        s.mayWrite(call)
        cmx_store_relaxed_u64(place, UInt64(UInt(bitPattern: input)))
        s.declare(call, bytes: invalid ?? UInt64(bytes))
        s.publish(call)
        s.waitAll(call)
        var failure: MPIError?
        for r in 0..<s.ranks where r != s.me {
            let theirs = s.declared(call, by: r)
            if theirs != UInt64(bytes) && invalid == nil { failure = s.mismatch("alltoall", r, theirs: theirs, mine: bytes); break }
        }
        if failure == nil && invalid == nil {
            (output + s.me * block).copyMemory(from: input + s.me * block, byteCount: block)
            for r in 0..<s.ranks where r != s.me {
                let address = cmx_load_relaxed_u64(s.flag(r) + 32 + Int(call & 1) * IntraHost.inlineBytes)
                do { try s.read(from: r, address: address + UInt64(s.me * block), bytes: block, into: output + r * block) } catch {
                    failure = error
                    break
                }
            }
        }
        // Both calls always, so every rank stays in step whatever failed.
        let done = s.begin()
        s.publish(done)
        s.waitAll(done)
        if let e = failure { throw e }
    }

    /// Allreduce of a long message in chunks of a slot, two calls each (Jocksch et al.'s
    /// reduce-scatter + allgather in shared memory, IJHPCA 2025, in its simplest form): in
    /// the first every rank copies its chunk into its slot, then reduces its own portion of
    /// the chunk (a p-th, whole elements) over every slot in rank order into its slot of the
    /// next bank; in the second every rank copies every rank's reduced portion into its
    /// output. Each byte is copied in once, reduced once by one rank, and copied out once per
    /// rank, whatever p. The second call reads the bank of its own number, as the flags'
    /// rule wants (see IntraHost).
    static func allreduceLong(_ s: IntraHost, input: UnsafeRawPointer, output: UnsafeMutableRawPointer, elements: Int,
                              elementSize: Int, valid: Bool,
                              _ op: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) throws(MPIError) {
        let p = s.ranks
        let perChunk = IntraHost.slotBytes / elementSize
        var done = 0
        // Every rank walks the same chunks (counts were checked in the first call).
        let bytes = elements * elementSize
        var firstCall = true
        while done < elements || firstCall {
            let n = min(perChunk, elements - done)
            let call = s.begin()
            s.mayWrite(call)
            if valid && n > 0 { s.slot(call, s.me).copyMemory(from: input + done * elementSize, byteCount: n * elementSize) }
            // The first chunk's call declares the whole message, so every rank agrees on the chunks.
            s.declare(call, bytes: valid ? UInt64(firstCall ? bytes : n * elementSize) : IntraHost.invalid)
            s.publish(call)
            s.waitAll(call)
            if firstCall {
                for r in 0..<p where r != s.me {
                    let theirs = s.declared(call, by: r)
                    if theirs != UInt64(bytes) || !valid {
                        // Leave the segment as the others do: they read the same declarations.
                        s.publish(s.begin())
                        throw valid ? s.mismatch("allreduce", r, theirs: theirs, mine: bytes)
                                    : MPIError(.buffer, "allreduce: an output too small for \(elements) elements")
                    }
                }
                firstCall = false
            }
            // My portion of this chunk: elements [lo, hi).
            let lo = n * s.me / p, hi = n * (s.me + 1) / p
            if hi > lo {
                let at = lo * elementSize
                let out = s.slot(call + 1, s.me) + at
                op(s.slot(call, 0) + at, s.slot(call, 1) + at, out, hi - lo)
                for r in 2..<max(p, 2) { op(out, s.slot(call, r) + at, out, hi - lo) }
            }
            let second = s.begin()
            s.publish(second)
            s.waitAll(second)
            for r in 0..<p {
                let a = n * r / p, b = n * (r + 1) / p
                if b > a {
                    (output + (done + a) * elementSize).copyMemory(from: s.slot(second, r) + a * elementSize, byteCount: (b - a) * elementSize)
                }
            }
            done += n
            if n == 0 { break }
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
        if valid && bytes > 0 { s.data(call, s.me, bytes: bytes).copyMemory(from: input!, byteCount: bytes) }
        s.declare(call, bytes: valid ? UInt64(bytes) : IntraHost.invalid)
        s.publish(call)
        guard all || s.me == root else { return }
        s.waitAll(call)
        for r in 0..<s.ranks where r != s.me {
            let theirs = s.declared(call, by: r)
            guard theirs == UInt64(bytes) || !valid else {
                s.keepInStepWithLongPath(call)
                throw s.mismatch(name, r, theirs: theirs, mine: bytes)
            }
        }
        guard bytes > 0, valid, let out = output else { return }
        op(s.data(call, 0, bytes: bytes), s.data(call, 1, bytes: bytes), out, elements)
        for r in 2..<max(s.ranks, 2) { op(out, s.data(call, r, bytes: bytes), out, elements) }
    }
}
