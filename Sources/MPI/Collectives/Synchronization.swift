import MyriXen

// Barrier and broadcast: the public calls, blocking and non-blocking. The algorithms are in
// Algorithms/, chosen by Selection.

extension Communicator {
    /// A root every member must name alike: one of this communicator's ranks.
    func check(root: Int) throws(MPIError) {
        try ensureUsable()
        guard root >= 0 && root < size else {
            throw MPIError(.root, "root \(root) is not a rank of this communicator of \(size) (0...\(size - 1))")
        }
    }

    // MARK: barrier

    /// Waits until every member has called it (MPI_Barrier).
    public func barrier() throws(MPIError) {
        if Selection.wantsSharedMemory(.barrier), let shm = try intraHost() {
            return SharedMemoryCollectives.barrier(shm)
        }
        try runBlocking("barrier", input: nil, output: nil) { s in planBarrier(s) }
    }

    /// Starts a barrier (MPI_Ibarrier): the request completes once every member has started one.
    public func ibarrier() throws(MPIError) -> Request<Void> {
        try startCollective("ibarrier", input: nil, output: nil, keep: []) { s in planBarrier(s) } finish: { () }
    }

    func planBarrier(_ s: Schedule) {
        switch Selection.choose(.barrier, CallShape(bytes: 0, ranks: size, layout: layout)) {
        case .hostAware: HostAwareBarrier.plan(s, layout: layout!)
        default: DisseminationBarrier.plan(s)
        }
    }

    // MARK: broadcast

    /// Sends the root's `buffer` into every member's (MPI_Bcast); every member passes a
    /// buffer of the same count.
    public func bcast<T: BitwiseCopyable>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws(MPIError) {
        try check(root: root)
        let bytes = buffer.count * MemoryLayout<T>.stride
        if Selection.wantsSharedMemory(.bcast), let shm = try intraHost() {
            return try SharedMemoryCollectives.bcast(shm, UnsafeMutableRawPointer(buffer.baseAddress), bytes: bytes, root: root)
        }
        try runBlocking("bcast", input: nil, output: UnsafeMutableRawPointer(buffer.baseAddress)) { s in
            planBcast(s, bytes: bytes, root: root)
        }
    }

    /// The root's `values` in every member's `values` (same count everywhere).
    public func bcast<T: BitwiseCopyable>(_ values: inout [T], root: Int) throws(MPIError) {
        try values.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try bcast(b, root: root) }
    }

    /// The root's value, on every member (what the others pass is ignored).
    public func bcast<T: BitwiseCopyable>(_ value: T, root: Int) throws(MPIError) -> T {
        try inPlaceElement(value) { (b) throws(MPIError) in try bcast(b, root: root) }
    }

    /// Starts a broadcast (MPI_Ibcast) of `values` (the root's; the others pass as many
    /// elements, whose values are ignored); the request gives the root's values.
    public func ibcast<T: BitwiseCopyable>(_ values: [T], root: Int) throws(MPIError) -> Request<[T]> {
        try check(root: root)
        let buffer = OwnedBuffer(copying: values)
        let n = values.count
        return try startCollective("ibcast", input: nil, output: buffer.pointer, keep: [buffer]) { s in
            planBcast(s, bytes: buffer.count, root: root)
        } finish: { buffer.array(of: T.self, count: n) }
    }

    /// Any Codable value of the root's, on every member (the object path: the root's encoding
    /// is broadcast after its length).
    @_disfavoredOverload
    public func bcast<T: Codable>(_ value: T, root: Int) throws(MPIError) -> T {
        try check(root: root)
        var bytes: [UInt8] = []
        var failure: MPIError?
        if rank == root {
            do { bytes = try BinaryCoding.encode(value) } catch { failure = MPIError(.other, "bcast: the root cannot encode \(T.self): \(error)") }
        }
        // The length goes first; -1 says the root could not encode, and every member fails.
        let n = try bcast(failure == nil ? bytes.count : -1, root: root)
        if let e = failure { throw e }
        guard n >= 0 else { throw MPIError(.other, "bcast: \(describe(root)), the root, cannot encode its \(T.self)") }
        if rank != root { bytes = [UInt8](repeating: 0, count: n) }
        try bcast(&bytes, root: root)
        if rank == root { return value }
        do { return try BinaryCoding.decode(T.self, from: bytes) } catch let e as MPIError { throw e } catch {
            throw MPIError(.other, "the broadcast value is not a \(T.self): \(error)")
        }
    }

    func planBcast(_ s: Schedule, bytes: Int, root: Int) {
        switch Selection.choose(.bcast, CallShape(bytes: bytes, ranks: size, layout: layout)) {
        case .hostAware:
            HostAwareBcast.plan(s, bytes: bytes, root: root, layout: layout!) { s, bytes, root in
                BinomialBcast.plan(s, bytes: bytes, root: root)
            }
        case .scatterAllgather: ScatterAllgatherBcast.plan(s, bytes: bytes, root: root)
        default: BinomialBcast.plan(s, bytes: bytes, root: root)
        }
    }
}

extension Communicator {
    /// `value` as a one-element buffer for an in-place call of a buffer form; the element as
    /// the call left it. (The single-value forms of every collective.)
    @inline(__always)
    func inPlaceElement<T: BitwiseCopyable>(_ value: T, _ body: (UnsafeMutableBufferPointer<T>) throws(MPIError) -> Void) throws(MPIError) -> T {
        var v = value
        try withUnsafeMutablePointer(to: &v) { (p) throws(MPIError) in try body(UnsafeMutableBufferPointer(start: p, count: 1)) }
        return v
    }
}

extension OwnedBuffer {
    /// The first `count` elements, as an array.
    func array<T: BitwiseCopyable>(of _: T.Type, count n: Int) -> [T] {
        Array(UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: T.self), count: n))
    }
}
