import MyriXen

/// Memory a pending operation reads or writes, owned by its request: it stays valid until the
/// operation is over, whatever the caller does with its own arrays meanwhile.
final class OwnedBuffer {
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(bytes: Int) {
        count = bytes
        pointer = .allocate(byteCount: max(bytes, 1), alignment: 16)
    }

    init<T: BitwiseCopyable>(copying values: [T]) {
        count = values.count * MemoryLayout<T>.stride
        pointer = .allocate(byteCount: max(count, 1), alignment: 16)
        values.withUnsafeBytes { if $0.count > 0 { pointer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }

    deinit { pointer.deallocate() }
}

/// A non-blocking operation (MPI_Request). `wait` and `test` give its result once; a request
/// keeps the memory it reads or writes alive until the operation is over. Dropping a request
/// that is not finished is safe: an unmatched receive is cancelled, anything else is waited
/// for (so no memory is ever written after it was freed).
public final class Request<Value> {
    let comm: Communicator
    let handle: MXRequest
    let buffer: OwnedBuffer?
    let finish: (MXStatus, OwnedBuffer?) throws(MPIError) -> Value
    let isReceive: Bool
    /// The rank (in `comm`) the operation sends to or receives from, if one.
    let peer: Int?
    public private(set) var isComplete = false
    /// The completed operation's status (source, tag, size, cancelled).
    public private(set) var status: Status?

    init(comm: Communicator, handle: MXRequest, buffer: OwnedBuffer?, isReceive: Bool, peer: Int?,
         finish: @escaping (MXStatus, OwnedBuffer?) throws(MPIError) -> Value) {
        self.comm = comm
        self.handle = handle
        self.buffer = buffer
        self.isReceive = isReceive
        self.peer = peer
        self.finish = finish
    }

    deinit {
        guard !isComplete, !comm.endpoint.isClosed else { return }
        if isReceive, (try? comm.endpoint.cancel(handle)) == true { _ = try? comm.endpoint.wait(handle); return }
        _ = try? comm.endpoint.wait(handle)
    }

    func alreadyDone() -> MPIError {
        MPIError(.request, "this request already completed; its result was given by an earlier wait or test")
    }

    /// Waits for the operation and returns its result (MPI_Wait).
    public func wait() throws(MPIError) -> Value {
        guard !isComplete else { throw alreadyDone() }
        let st: MXStatus
        do { st = try comm.endpoint.wait(handle) } catch {
            isComplete = true
            throw comm.failure(error, peer: peer)
        }
        isComplete = true
        status = comm.status(st)
        return try finish(st, buffer)
    }

    /// The result if the operation is over, else nil (MPI_Test).
    public func test() throws(MPIError) -> Value? {
        guard !isComplete else { throw alreadyDone() }
        let st: MXStatus?
        do { st = try comm.endpoint.test(handle) } catch {
            isComplete = true
            throw comm.failure(error, peer: peer)
        }
        guard let s = st else { return nil }
        isComplete = true
        status = comm.status(s)
        return try finish(s, buffer)
    }

    /// Cancels a receive that has not matched yet (MPI_Cancel); sends are never cancelled.
    /// True if it was cancelled: `wait` then throws nothing and returns a cancelled status.
    @discardableResult
    public func cancel() throws(MPIError) -> Bool {
        guard !isComplete else { return false }
        do { return try comm.endpoint.cancel(handle) } catch { throw comm.failure(error, peer: peer) }
    }
}

extension Request {
    /// The result, suspending the task (not blocking its thread) until the operation is over.
    public func value() async throws -> Value {
        while true {
            if let v = try test() { return v }
            await Task.yield()
        }
    }

    /// Waits for all of `requests` (MPI_Waitall), in order; the first failure is thrown after
    /// every request is over.
    public static func waitAll(_ requests: [Request<Value>]) throws(MPIError) -> [Value] {
        var out: [Value] = []
        var firstError: MPIError?
        for r in requests {
            do throws(MPIError) { out.append(try r.wait()) } catch { if firstError == nil { firstError = error } }
        }
        if let e = firstError { throw e }
        return out
    }

    /// Waits until one of `requests` is over; returns its index and result (MPI_Waitany).
    public static func waitAny(_ requests: [Request<Value>]) throws(MPIError) -> (index: Int, value: Value) {
        let pending = requests.indices.filter { !requests[$0].isComplete }
        guard let first = pending.first else { throw MPIError(.request, "waitAny needs at least one request still pending") }
        let endpoint = requests[first].comm.endpoint
        let (k, st): (Int, MXStatus)
        do { (k, st) = try endpoint.waitAny(pending.map { requests[$0].handle }) } catch {
            // The request that failed is the one whose handle no longer resolves.
            let failed = pending.first { (try? endpoint.isComplete(requests[$0].handle)) == nil }
            if let i = failed { requests[i].isComplete = true }
            let r = requests[failed ?? first]
            throw r.comm.failure(error, peer: failed.flatMap { requests[$0].peer })
        }
        let r = requests[pending[k]]
        r.isComplete = true
        r.status = r.comm.status(st)
        return (pending[k], try r.finish(st, r.buffer))
    }

    /// The first of `requests` that is over, with its result, else nil (MPI_Testany).
    public static func testAny(_ requests: [Request<Value>]) throws(MPIError) -> (index: Int, value: Value)? {
        for (i, r) in requests.enumerated() where !r.isComplete {
            if let v = try r.test() { return (i, v) }
        }
        return nil
    }

    /// Whether every request is over (MPI_Testall): their results, else nil (none consumed).
    public static func testAll(_ requests: [Request<Value>]) throws(MPIError) -> [Value]? {
        for r in requests where !r.isComplete {
            guard (try? r.comm.endpoint.isComplete(r.handle)) == true else { return nil }
        }
        return try waitAll(requests.filter { !$0.isComplete })
    }
}
