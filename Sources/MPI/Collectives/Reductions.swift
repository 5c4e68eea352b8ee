import MyriXen

// The reducing collectives: the public calls, blocking and non-blocking. Contributions are
// combined in rank order for a non-commutative operation (see Operation). The algorithms are
// in Algorithms/, chosen by Selection.

extension Communicator {
    // MARK: allreduce

    /// Combines every member's `input` element by element; the result lands in every
    /// member's `output` (MPI_Allreduce). Passing the same memory for both is the in-place
    /// form. Allocates nothing.
    public func allreduce<T: BitwiseCopyable>(_ input: UnsafeBufferPointer<T>, into output: UnsafeMutableBufferPointer<T>,
                                              _ op: Operation<T>) throws(MPIError) {
        let n = input.count
        try runBlocking("allreduce", input: UnsafeRawPointer(input.baseAddress), output: UnsafeMutableRawPointer(output.baseAddress)) { s throws(MPIError) in
            guard output.count >= n else {
                throw MPIError(.buffer, "allreduce: an output of \(output.count) elements cannot take \(n)")
            }
            s.reduce(with: op)
            planAllreduce(s, elements: n)
        }
    }

    /// Every member's `values` combined, on every member.
    public func allreduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> [T] {
        var out = [T](unsafeUninitializedCapacity: values.count) { _, n in n = values.count }
        try values.withUnsafeBufferPointer { (i) throws(MPIError) in
            try out.withUnsafeMutableBufferPointer { (o) throws(MPIError) in try allreduce(i, into: o, op) }
        }
        return out
    }

    /// The in-place form (MPI_IN_PLACE): `values` becomes the combination of every member's.
    public func allreduce<T: BitwiseCopyable>(inPlace values: inout [T], _ op: Operation<T>) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try allreduce(UnsafeBufferPointer(b), into: b, op) }
    }

    /// One value from every member, combined.
    public func allreduce<T: BitwiseCopyable>(_ value: T, _ op: Operation<T>) throws(MPIError) -> T {
        var v = value
        try withUnsafeMutablePointer(to: &v) { (p) throws(MPIError) in
            let b = UnsafeMutableBufferPointer(start: p, count: 1)
            try allreduce(UnsafeBufferPointer(b), into: b, op)
        }
        return v
    }

    /// Starts an allreduce (MPI_Iallreduce); the request gives the combined values.
    public func iallreduce<T: BitwiseCopyable>(_ values: [T], _ op: Operation<T>) throws(MPIError) -> Request<[T]> {
        let buffer = OwnedBuffer(copying: values)
        let n = values.count
        return try startCollective("iallreduce", input: buffer.pointer, output: buffer.pointer, keep: [buffer]) { s in
            s.reduce(with: op)
            planAllreduce(s, elements: n)
        } finish: { buffer.array(of: T.self, count: n) }
    }

    func planAllreduce(_ s: Schedule, elements: Int) {
        switch Selection.choose(.allreduce, CallShape(bytes: elements * s.elementSize, ranks: size)) {
        default: RecursiveDoublingAllreduce.plan(s, elements: elements)
        }
    }
}
