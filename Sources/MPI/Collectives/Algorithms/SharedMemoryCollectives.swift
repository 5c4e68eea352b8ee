import CMyriXen

/// Barrier, broadcast, reduce, allreduce and alltoall among ranks of one host, at every size,
/// through their shared segment (IntraHost) rather than the channel: in the spirit of Open
/// MPI's coll/xhc (Katevenis et al., Cluster 2022) and MPICH's release/gather collectives
/// (Jain et al., SC18): data is copied into the sender's slot (up to 16 bytes into its flag
/// line), flags with a single writer say what is there, every reader reads the slots it
/// needs directly; long messages go in chunks, the two banks letting one chunk be copied in
/// while the one before is copied out. No message, no matching, no request: one store and
/// one load per peer in the common case.
///
/// Reductions combine the slots in rank order (slot 0 op slot 1 op ...), so a
/// non-commutative operation is applied exactly in rank order and every rank gets the same
/// bits. Every protocol declares the counts in its first call; on a mismatch every rank
/// leaves after that call, so all stay in step (docs/collectives.md).
enum SharedMemoryCollectives {
    static func barrier(_ s: IntraHost) {
        let call = s.begin()
        s.publish(call)
        s.waitAll(call)
    }

    /// `buffer` (the root's) into every member's, copied into the segment by the root and
    /// out of it by every other rank, in chunks of up to a bank (every rank's slot of it), so
    /// readers copy one chunk out while the root copies the next in (two banks). Up to 16
    /// bytes travel in the root's flag line. A copy in and a copy out by the CPU beat one
    /// copy by the kernel here: process_vm_readv of 1 MiB took 121 µs where memcpy took 28
    /// (docs/collectives.md); Open MPI's XHC and MPICH's release/gather copy in and out so.
    ///
    /// How many calls it takes follows from the root's count, declared in the first call
    /// (with every other rank's): a rank whose count differs fails after that first call,
    /// and so do all the others if the message spans more than one chunk (they compare
    /// every declaration before the second), so all stay in step.
    static func bcast(_ s: IntraHost, _ buffer: UnsafeMutableRawPointer?, bytes: Int, root: Int) throws(MPIError) {
        let first = s.begin()
        if s.me == root { s.mayWrite(first) }
        s.declare(first, bytes: UInt64(bytes))
        if s.me != root {
            s.publish(first)
            s.wait(for: root, first)
            let theirs = s.declared(first, by: root)
            guard theirs == UInt64(bytes) else { throw s.mismatch("bcast", root, theirs: theirs, mine: bytes) }
        }
        let chunk = s.bcastChunk(bytes)
        var done = 0
        var call = first
        while true {
            let n = min(chunk, bytes - done)
            let area = bytes <= IntraHost.inlineBytes ? s.inline(call, root) : s.slot(call, 0)
            if s.me == root {
                if n > 0 { area.copyMemory(from: buffer! + done, byteCount: n) }
                s.publish(call)
            } else {
                s.wait(for: root, call)
                if n > 0 { (buffer! + done).copyMemory(from: area, byteCount: n) }
            }
            done += n
            guard done < bytes else { return }
            if call == first { try s.expectEveryone(first, declared: bytes, "bcast") }
            call = s.begin()
            if s.me == root { s.mayWrite(call) } else { s.publish(call) }
        }
    }

    /// Block r of every member's `input` to rank r. In each call every rank copies the next
    /// piece of each of its blocks for the others into its slot, publishes, waits for all,
    /// and copies its piece of every other rank's slot into its output (its own block goes
    /// straight across); the two banks let a rank copy its next pieces in while a slower one
    /// still copies out. `input` may be `output`: each piece is copied in before the same
    /// range is written. Counts (or `invalid`: what this rank's arguments are wrong in) are
    /// declared in the first call, after which any mismatch fails every rank.
    static func alltoall(_ s: IntraHost, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?, block: Int,
                         invalid: UInt64?) throws(MPIError) {
        let p = s.ranks
        let total = block * p
        let valid = invalid == nil
        if valid, block > 0, let out = output, UnsafeRawPointer(out) != input, p * p * block * 2 >= IntraHost.singleCopyFootprint {
            return try alltoallSingleCopy(s, input: input!, output: out, block: block)
        }
        let inline = total <= IntraHost.inlineBytes
        // Inline, the whole input sits in the line; else one piece per other rank per slot.
        // (Smaller pieces, a longer pipeline, measured slower: every call waits for all.)
        let piece = inline ? max(block, 1) : max(64, (s.slot / (p - 1)) & ~63)
        var done = 0
        repeat {
            let n = min(piece, block - done)
            let call = s.begin()
            let isFirst = done == 0
            s.mayWrite(call)
            if valid && n > 0 {
                if inline {
                    s.inline(call, s.me).copyMemory(from: input!, byteCount: total)
                } else {
                    for d in 0..<p where d != s.me {
                        (s.slot(call, s.me) + (d < s.me ? d : d - 1) * piece).copyMemory(from: input! + d * block + done, byteCount: n)
                    }
                }
            }
            if isFirst { s.declare(call, bytes: invalid ?? UInt64(total)) }
            s.publish(call)
            // Its own block straight across while the others copy in (nothing to do in place).
            if isFirst && valid && block > 0, let out = output, UnsafeRawPointer(out) != input {
                (out + s.me * block).copyMemory(from: input! + s.me * block, byteCount: block)
            }
            s.waitAll(call)
            if isFirst {
                guard valid else { return } // the caller throws this rank's own error
                try s.expectEveryone(call, declared: total, "alltoall")
            }
            guard n > 0, let out = output else { return }
            for r in 0..<p where r != s.me {
                let from = inline ? s.inline(call, r) + s.me * block : s.slot(call, r) + (s.me < r ? s.me : s.me - 1) * piece
                (out + r * block + done).copyMemory(from: from, byteCount: n)
            }
            done += n
        } while done < block
    }

    /// An alltoall too large for the cache, in one copy per block: every rank says where
    /// its input is, reads its block of every other rank's input straight from that rank's
    /// memory (process_vm_readv), then, in a second call, says it is done and waits until
    /// all are (its caller may change its input once it returns). Not in place: the others
    /// read the input while the output is written. Its declaration carries
    /// `singleCopyMark`, so a rank passing in place (the slots) fails with all the others
    /// after the first call.
    static func alltoallSingleCopy(_ s: IntraHost, input: UnsafeRawPointer, output: UnsafeMutableRawPointer,
                                   block: Int) throws(MPIError) {
        let call = s.begin()
        let declared = UInt64(block * s.ranks) | IntraHost.singleCopyMark
        s.mayWrite(call)
        s.expose(call, input)
        s.declare(call, bytes: declared)
        s.publish(call)
        (output + s.me * block).copyMemory(from: input + s.me * block, byteCount: block)
        s.waitAll(call)
        try s.expectEveryone(call, declared: Int(declared), "alltoall")
        var failure: MPIError?
        for r in 0..<s.ranks where r != s.me {
            do { try s.read(call, from: r, offset: s.me * block, bytes: block, into: output + r * block) } catch {
                failure = error
                break
            }
        }
        // Done reading: the others may return (their inputs are theirs again).
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
    /// rank, whatever p. The second call reads the bank of its own number, as the flags' rule
    /// wants (see IntraHost). Counts (and `valid`: this rank's output takes them) are declared
    /// in the first call and compared by every rank before any is reduced: a mismatch fails
    /// every rank after it.
    static func allreduceLong(_ s: IntraHost, input: UnsafeRawPointer, output: UnsafeMutableRawPointer,
                              elements: Int, elementSize: Int, valid: Bool,
                              _ op: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) throws(MPIError) {
        let p = s.ranks
        let bytes = elements * elementSize
        // Chunks of a slot, or of a quarter of the message (a pipeline of four) down to 16 KiB;
        // on a crowded host, of a slot.
        let perChunk = max(1, (s.crowded ? s.slot : min(s.slot, max(16 << 10, bytes / 4))) / elementSize)
        var done = 0
        while true {
            let n = min(perChunk, elements - done)
            let call = s.begin()
            s.mayWrite(call)
            if valid && n > 0 { s.slot(call, s.me).copyMemory(from: input + done * elementSize, byteCount: n * elementSize) }
            // The first chunk's call declares the whole message, so every rank agrees on the chunks.
            if done == 0 { s.declare(call, bytes: valid ? UInt64(bytes) : IntraHost.invalid) }
            s.publish(call)
            s.waitAll(call)
            if done == 0 {
                guard valid else { throw MPIError(.buffer, "allreduce: an output too small for \(elements) elements") }
                try s.expectEveryone(call, declared: bytes, "allreduce")
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
            if done >= elements { return }
        }
    }

    /// Every member's `input` combined into the root's `output`, in chunks: every other
    /// rank copies its next chunk into its slot while the root combines the one before,
    /// straight from the slots and its own input into its output, in rank order (exact for a
    /// non-commutative operation). The root publishes each call as it starts it (it writes
    /// nothing into the segment, so its flag only says what it is done with), which lets the
    /// others fill the next bank at once. Counts (`valid`: the root's output takes them) are
    /// declared in the first call; the root compares them there, the others before their
    /// second, so on a mismatch all leave after the first call. A rank that only sends and
    /// whose message fits one chunk may return before the root looks, as in MPICH.
    static func reduce(_ s: IntraHost, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?, elements: Int,
                       elementSize: Int, root: Int, valid: Bool,
                       _ op: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) throws(MPIError) {
        let p = s.ranks
        let bytes = elements * elementSize
        let perChunk = max(1, (s.crowded ? s.slot : min(s.slot, max(4 << 10, bytes / 8))) / elementSize)
        // In place at a root after the first, its input is read after the result overwrote it:
        // it goes through its slot, as the others' do.
        let staged = UnsafeRawPointer(output) == input && root > 0
        var done = 0
        let first = s.begin()
        var call = first
        while true {
            let n = min(perChunk, elements - done)
            let at = done * elementSize
            if s.me == root {
                if staged { s.mayWrite(call) }
                if staged && valid && n > 0 { s.slot(call, s.me).copyMemory(from: input! + at, byteCount: n * elementSize) }
                if call == first { s.declare(call, bytes: valid ? UInt64(bytes) : IntraHost.invalid) }
                s.publish(call)
                s.waitAll(call)
                if call == first {
                    guard valid else { return } // the caller throws the root's own error
                    try s.expectEveryone(call, declared: bytes, "reduce")
                }
                if n > 0 {
                    let out = output! + at
                    let mine = staged ? UnsafeRawPointer(s.slot(call, s.me)) : input! + at
                    // Rank r's part of this chunk (no closure: it would box `call` on the heap).
                    let lhs = 0 == s.me ? mine : UnsafeRawPointer(s.data(call, 0, bytes: bytes))
                    let rhs = 1 == s.me ? mine : UnsafeRawPointer(s.data(call, 1, bytes: bytes))
                    op(lhs, rhs, out, n)
                    for r in 2..<max(p, 2) {
                        op(out, r == s.me ? mine : UnsafeRawPointer(s.data(call, r, bytes: bytes)), out, n)
                    }
                }
            } else {
                s.mayWrite(call)
                if n > 0 { s.data(call, s.me, bytes: bytes).copyMemory(from: input! + at, byteCount: n * elementSize) }
                if call == first { s.declare(call, bytes: UInt64(bytes)) }
                s.publish(call)
            }
            done += n
            if done >= elements { return }
            // Before a second call (no call begun and left unpublished): everyone's count.
            if call == first && s.me != root { try s.expectEveryone(first, declared: bytes, "reduce") }
            call = s.begin()
        }
    }

    /// Every member's `input` combined into every member's `output`, whole through the slots:
    /// every rank combines all of them itself, in rank order, so all get the same bits.
    /// `input` may be `output`. A member with `valid` false (its output is too small) declares
    /// that and the others fail too; so do counts that differ.
    static func allreduce(_ s: IntraHost, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?, elements: Int,
                          elementSize: Int, valid: Bool,
                          _ op: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) throws(MPIError) {
        let call = s.begin()
        let bytes = elements * elementSize
        s.mayWrite(call)
        if valid && bytes > 0 { s.data(call, s.me, bytes: bytes).copyMemory(from: input!, byteCount: bytes) }
        s.declare(call, bytes: valid ? UInt64(bytes) : IntraHost.invalid)
        s.publish(call)
        s.waitAll(call)
        guard valid else { return } // the caller throws this rank's own error
        try s.expectEveryone(call, declared: bytes, "allreduce")
        guard bytes > 0, let out = output else { return }
        op(s.data(call, 0, bytes: bytes), s.data(call, 1, bytes: bytes), out, elements)
        for r in 2..<max(s.ranks, 2) { op(out, s.data(call, r, bytes: bytes), out, elements) }
    }
}
