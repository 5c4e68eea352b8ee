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

/// A non-blocking operation (MPI_Request): a point-to-point send or receive, or a collective.
/// `wait` and `test` give its result once; a request keeps the memory it reads or writes alive
/// until the operation is over. Dropping a request that is not finished is safe: an unmatched
/// receive is cancelled, anything else is waited for (so no memory is ever written after it
/// was freed). Waiting on either kind advances every collective in flight.
public final class Request<Value> {
    enum Work {
        case channel(MXRequest, finish: (MXStatus, OwnedBuffer?) throws(MPIError) -> Value)
        case collective(Schedule, finish: () throws(MPIError) -> Value)
    }
    let comm: Communicator
    let work: Work
    let buffer: OwnedBuffer?
    let isReceive: Bool
    /// The rank (in `comm`) the operation sends to or receives from, if one.
    let peer: Int?
    public private(set) var isComplete = false
    /// The completed operation's status (source, tag, size, cancelled); nil for a collective.
    public private(set) var status: Status?

    init(comm: Communicator, handle: MXRequest, buffer: OwnedBuffer?, isReceive: Bool, peer: Int?,
         finish: @escaping (MXStatus, OwnedBuffer?) throws(MPIError) -> Value) {
        self.comm = comm
        work = .channel(handle, finish: finish)
        self.buffer = buffer
        self.isReceive = isReceive
        self.peer = peer
    }

    init(comm: Communicator, schedule: Schedule, finish: @escaping () throws(MPIError) -> Value) {
        self.comm = comm
        work = .collective(schedule, finish: finish)
        buffer = nil
        isReceive = false
        peer = nil
    }

    deinit {
        guard !isComplete, !comm.endpoint.isClosed else { return }
        switch work {
        case let .channel(handle, _):
            if isReceive, (try? comm.endpoint.cancel(handle)) == true { _ = try? comm.endpoint.wait(handle); return }
            _ = try? comm.waitChannel(handle)
        case let .collective(s, _):
            // Its messages are part of every member's call: it runs to its end.
            _ = try? comm.complete(s)
        }
    }

    func alreadyDone() -> MPIError {
        MPIError(.request, "this request already completed; its result was given by an earlier wait or test")
    }

    /// Whether the operation is over, without completing it (after one round of progress).
    func isOver() -> Bool {
        switch work {
        case let .channel(h, _):
            if comm.endpoint.isDone(h) { return true }
            comm.engine.poll()
            return (try? comm.endpoint.isComplete(h)) ?? true
        case let .collective(s, _):
            comm.engine.poll()
            return s.isDone
        }
    }

    /// Waits for the operation and returns its result (MPI_Wait).
    public func wait() throws(MPIError) -> Value {
        guard !isComplete else { throw alreadyDone() }
        switch work {
        case let .channel(handle, finish):
            let st: MXStatus
            do { st = try comm.waitChannel(handle) } catch {
                isComplete = true
                throw comm.failure(error, peer: peer)
            }
            isComplete = true
            status = comm.status(st)
            return try finish(st, buffer)
        case let .collective(s, finish):
            isComplete = true
            try comm.complete(s)
            return try finish()
        }
    }

    /// The result if the operation is over, else nil (MPI_Test).
    public func test() throws(MPIError) -> Value? {
        guard !isComplete else { throw alreadyDone() }
        switch work {
        case let .channel(handle, finish):
            comm.engine.poll()
            let st: MXStatus?
            do { st = try comm.endpoint.test(handle) } catch {
                isComplete = true
                throw comm.failure(error, peer: peer)
            }
            guard let s = st else { return nil }
            isComplete = true
            status = comm.status(s)
            return try finish(s, buffer)
        case let .collective(s, finish):
            comm.engine.poll()
            guard s.isDone else { return nil }
            isComplete = true
            if let e = s.error { throw e }
            return try finish()
        }
    }

    /// Cancels a receive that has not matched yet (MPI_Cancel); sends and collectives are
    /// never cancelled. True if it was cancelled: `wait` then throws nothing and returns a
    /// cancelled status.
    @discardableResult
    public func cancel() throws(MPIError) -> Bool {
        guard !isComplete, case let .channel(handle, _) = work else { return false }
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

    /// Until one of the requests is over.
    struct AnyOver: MXWaitCondition {
        let requests: [Request<Value>]
        func holds(_: MXEndpoint) -> Bool { requests.contains { !$0.isComplete && $0.isOver() } }
    }

    /// Waits until one of `requests` is over; returns its index and result (MPI_Waitany).
    public static func waitAny(_ requests: [Request<Value>]) throws(MPIError) -> (index: Int, value: Value) {
        guard let first = requests.first(where: { !$0.isComplete }) else {
            throw MPIError(.request, "waitAny needs at least one request still pending")
        }
        do { try first.comm.endpoint.wait(until: AnyOver(requests: requests)) } catch {
            throw first.comm.failure(error, peer: nil)
        }
        let i = requests.indices.first { !requests[$0].isComplete && requests[$0].isOver() }!
        return (i, try requests[i].wait())
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
            guard r.isOver() else { return nil }
        }
        return try waitAll(requests.filter { !$0.isComplete })
    }
}
