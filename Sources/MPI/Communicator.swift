import MyriXen
import Bootstrap

/// Where a receive takes messages from.
public enum Source: ExpressibleByIntegerLiteral, Equatable, Sendable {
    case rank(Int)
    case any
    public init(integerLiteral value: Int) { self = .rank(value) }

    var rank: Int? { if case let .rank(r) = self { return r } else { return nil } }
}

/// Which tags a receive takes.
public enum Tag: ExpressibleByIntegerLiteral, Equatable, Sendable {
    case value(Int)
    case any
    public init(integerLiteral value: Int) { self = .value(value) }
}

/// What a completed receive (or a probe) says about its message.
public struct Status: Equatable, Sendable {
    public let source: Int
    public let tag: Int
    /// Bytes in the message.
    public let byteCount: Int
    public let isCancelled: Bool

    /// Elements of `T` in the message (MPI_Get_count); nil when it is not a whole number of them.
    public func count<T>(of _: T.Type) -> Int? {
        let stride = MemoryLayout<T>.stride
        return stride == 0 || byteCount % stride != 0 ? nil : byteCount / stride
    }
}

/// A communicator: a group of ranks with a context of its own, so its traffic never matches a
/// receive posted on another communicator.
public final class Communicator {
    let world: MXWorld
    let context: UInt16
    /// World rank of each member, by rank in this communicator.
    let members: [Int]
    public let rank: Int
    public var size: Int { members.count }

    let contexts: ContextIDs
    /// What every call reads, behind pointers: no exclusivity check, no reference counting.
    let freed: UnsafeMutablePointer<Bool>
    let addresses: UnsafeMutablePointer<MXEndpointAddress?>

    /// Whether `free()` was called.
    public var isFreed: Bool { freed.pointee }

    /// What an operation's failure does: `.fatal` (the default, as in MPI) ends the job on a
    /// failure of the job itself; `.throwing` throws every error.
    public var errorHandler: ErrorHandler

    /// Collectives: the process's engine, this communicator's count of calls, and the
    /// schedule its blocking calls reuse.
    let engine: CollectiveEngine
    var collectiveSequence = 0
    lazy var blockingSchedule = Schedule(comm: self)
    var hostLayoutCache: HostLayout?
    /// The shared segment of the intra-host collectives (IntraHost), once asked for.
    var intraHostState = IntraHostState.unknown

    init(world: MXWorld, context: UInt16, ranks: [Int], myRank: Int, contexts: ContextIDs, engine: CollectiveEngine,
         errorHandler: ErrorHandler = .fatal) {
        self.world = world
        self.engine = engine
        self.errorHandler = errorHandler
        self.context = context
        members = ranks
        rank = myRank
        self.contexts = contexts
        freed = .allocate(capacity: 1)
        freed.initialize(to: false)
        addresses = .allocate(capacity: max(ranks.count, 1))
        addresses.initialize(repeating: nil, count: max(ranks.count, 1))
    }

    deinit {
        freed.deallocate()
        addresses.deinitialize(count: max(members.count, 1))
        addresses.deallocate()
    }

    var endpoint: MXEndpoint { world.endpoint }

    func check(destination: Int) throws(MPIError) {
        try ensureUsable()
        engine.poll()
        guard destination >= 0 && destination < size else {
            throw MPIError(.rank, "rank \(destination) is not in this communicator of \(size)")
        }
    }

    func check(tag: Int) throws(MPIError) {
        guard tag >= 0 && tag <= MatchBits.maxTag else {
            throw MPIError(.tag, "tag \(tag) is outside 0...\(MatchBits.maxTag)")
        }
    }

    /// The endpoint address of rank `r`, connected on first use and kept.
    @inline(__always)
    func address(_ r: Int) throws(MPIError) -> MXEndpointAddress {
        if let a = addresses[r] { return a }
        do {
            let a = try world.address(of: members[r])
            addresses[r] = a
            return a
        } catch let e as MXError {
            // A peer gone is named by failure(); any other connect failure says whom it was for.
            throw failure(e.code == .peerClosed ? e : MXError(e.code, "cannot reach \(describe(r)): \(e.message)", peer: e.peer), peer: r)
        } catch {
            throw failure(MPIError(.intern, "cannot reach \(describe(r)): \(error)"))
        }
    }

    /// Who a receive from `source` waits for: one rank's endpoint (connected first, so that the
    /// receive fails should that rank go away), or any peer.
    @inline(__always)
    func sender(_ source: Source) throws(MPIError) -> MXSender {
        if case let .rank(r) = source { return .peer(try address(r)) }
        return .anyPeer
    }

    func mx<R>(peer: Int? = nil, _ body: () throws(MXError) -> R) throws(MPIError) -> R {
        do { return try body() } catch { throw failure(error, peer: peer) }
    }

    /// "rank 3 on vm2": a member as errors name it.
    func describe(_ r: Int) -> String { describe(worldRank: members[r]) }

    func describe(worldRank w: Int) -> String {
        let host = world.hostName(of: w).map { " on \($0)" } ?? ""
        guard let r = members.firstIndex(of: w) else { return "world rank \(w)\(host)" }
        return w == r ? "rank \(r)\(host)" : "rank \(r) (world rank \(w))\(host)"
    }

    /// A channel failure in MPI's terms, naming the rank it concerns (the operation's, else the
    /// one whose endpoint the error names); see `failure(_:)`.
    func failure(_ e: MXError, peer r: Int?) -> MPIError {
        var err = MPIError(e)
        if err.errorClass == .procFailed, let w = r.map({ members[$0] }) ?? e.peer.flatMap(world.rank(of:)) {
            err = MPIError(.procFailed, "\(describe(worldRank: w)) is gone: \(e.message)")
        }
        return failure(err)
    }

    /// The error to throw, after the error handler had its say: under `.fatal` a failure of
    /// the job ends it here, with the rank's report as the abort message.
    func failure(_ e: MPIError) -> MPIError {
        guard errorHandler == .fatal && e.isFailureOfTheJob else { return e }
        world.pmi.abort(code: ErrorHandler.fatalExitCode,
                        message: "rank \(world.rank) on \(world.context.hostname): \(e) (errors are fatal; set errorHandler = .throwing to handle them)")
    }

    // MARK: sending

    /// Sends `buffer` to `destination` (MPI_Send, standard mode).
    @inlinable
    public func send<T: BitwiseCopyable>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0) throws(MPIError) {
        try sendRaw(UnsafeRawBufferPointer(buffer), to: destination, tag: tag)
    }

    /// The send itself, not generic: the typed wrappers specialize in the caller and call this.
    @usableFromInline
    func sendRaw(_ raw: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws(MPIError) {
        try check(destination: destination)
        try check(tag: tag)
        let to = try address(destination)
        let info = MatchBits.info(context: context, source: rank, tag: tag)
        do { _ = try waitChannel(try endpoint.isend(raw, to: to, matchInfo: info)) } catch { throw failure(error, peer: destination) }
    }

    @inlinable
    public func send<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws(MPIError) {
        try values.withUnsafeBufferPointer { (b) throws(MPIError) in try sendRaw(UnsafeRawBufferPointer(b), to: destination, tag: tag) }
    }

    public func send<T: BitwiseCopyable>(_ value: T, to destination: Int, tag: Int = 0) throws(MPIError) {
        try send([value], to: destination, tag: tag)
    }

    /// A synchronous send (MPI_Ssend): returns only once the receiver has matched it.
    public func ssend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws(MPIError) {
        _ = try issend(values, to: destination, tag: tag).wait()
    }

    // MARK: non-blocking

    func startSend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int, sync: Bool) throws(MPIError) -> Request<Void> {
        try check(destination: destination)
        try check(tag: tag)
        let to = try address(destination)
        let buffer = OwnedBuffer(copying: values) // the request owns what it sends
        let raw = UnsafeRawBufferPointer(start: buffer.pointer, count: buffer.count)
        let info = MatchBits.info(context: context, source: rank, tag: tag)
        let handle = try mx(peer: destination) { () throws(MXError) in
            sync ? try endpoint.issend(raw, to: to, matchInfo: info) : try endpoint.isend(raw, to: to, matchInfo: info)
        }
        return Request(comm: self, handle: handle, buffer: buffer, isReceive: false, peer: destination) { _, _ in () }
    }

    /// Starts a send from the caller's memory, without a copy (for experts): `buffer` must stay
    /// valid and unchanged until the request is over.
    public func isend<T: BitwiseCopyable>(unsafe buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0) throws(MPIError) -> Request<Void> {
        try check(destination: destination)
        try check(tag: tag)
        let to = try address(destination)
        let info = MatchBits.info(context: context, source: rank, tag: tag)
        let handle = try mx(peer: destination) { () throws(MXError) in try endpoint.isend(UnsafeRawBufferPointer(buffer), to: to, matchInfo: info) }
        return Request(comm: self, handle: handle, buffer: nil, isReceive: false, peer: destination) { _, _ in () }
    }

    /// Starts a receive straight into the caller's memory (for experts): `buffer` must stay
    /// valid until the request is over. `wait` gives the number of elements received.
    public func ireceive<T: BitwiseCopyable>(unsafe buffer: UnsafeMutableBufferPointer<T>, from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Request<Int> {
        let (info, mask, from) = try receiveTarget(source, tag)
        let handle = try mx(peer: source.rank) { () throws(MXError) in
            try endpoint.irecv(UnsafeMutableRawBufferPointer(buffer), matchInfo: info, mask: mask, from: from)
        }
        return Request(comm: self, handle: handle, buffer: nil, isReceive: true, peer: source.rank) { (st, _) throws(MPIError) -> Int in
            guard !st.isTruncated else { throw MPIError(.truncate, "a message of \(st.messageLength) bytes does not fit \(buffer.count) \(T.self)") }
            return st.transferredLength / max(1, MemoryLayout<T>.stride)
        }
    }

    /// Starts a send (MPI_Isend); the request keeps a copy of `values` until it is over.
    public func isend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws(MPIError) -> Request<Void> {
        try startSend(values, to: destination, tag: tag, sync: false)
    }

    /// Starts a synchronous send (MPI_Issend): it completes once the receiver matched it.
    public func issend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws(MPIError) -> Request<Void> {
        try startSend(values, to: destination, tag: tag, sync: true)
    }

    /// Starts a receive of up to `count` elements (MPI_Irecv); `wait` gives them (as many as
    /// came). A longer message fails with `truncate`.
    public func ireceive<T: BitwiseCopyable>(_: T.Type, count: Int, from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Request<[T]> {
        guard count >= 0 else { throw MPIError(.count, "count \(count) is negative") }
        let (info, mask, from) = try receiveTarget(source, tag)
        let buffer = OwnedBuffer(bytes: count * MemoryLayout<T>.stride)
        let raw = UnsafeMutableRawBufferPointer(start: buffer.pointer, count: buffer.count)
        let handle = try mx(peer: source.rank) { () throws(MXError) in try endpoint.irecv(raw, matchInfo: info, mask: mask, from: from) }
        return Request(comm: self, handle: handle, buffer: buffer, isReceive: true, peer: source.rank) { (st, b) throws(MPIError) -> [T] in
            if st.isCancelled { return [] }
            guard !st.isTruncated else {
                throw MPIError(.truncate, "a message of \(st.messageLength) bytes does not fit \(count) \(T.self)")
            }
            guard st.transferredLength % max(1, MemoryLayout<T>.stride) == 0 else {
                throw MPIError(.count, "a message of \(st.transferredLength) bytes is not a whole number of \(T.self)")
            }
            let n = st.transferredLength / max(1, MemoryLayout<T>.stride)
            return Array(UnsafeBufferPointer(start: b!.pointer.assumingMemoryBound(to: T.self), count: n))
        }
    }

    /// Sends and receives at once (MPI_Sendrecv): never deadlocks however large the messages.
    public func sendReceive<T: BitwiseCopyable>(_ values: [T], to destination: Int, sendTag: Int = 0,
                                                 receiveCount: Int, from source: Source, receiveTag: Tag = .any) throws(MPIError) -> ([T], Status) {
        let incoming = try ireceive(T.self, count: receiveCount, from: source, tag: receiveTag)
        let outgoing = try isend(values, to: destination, tag: sendTag)
        let received = try incoming.wait()
        _ = try outgoing.wait()
        return (received, incoming.status!)
    }

    // MARK: receiving

    func receiveBits(_ source: Source, _ tag: Tag) throws(MPIError) -> (info: UInt64, mask: UInt64) {
        try ensureUsable()
        engine.poll()
        if let r = source.rank, r < 0 || r >= size {
            throw MPIError(.rank, "source rank \(r) is not in this communicator of \(size)")
        }
        var t: Int?
        if case let .value(v) = tag { try check(tag: v); t = v }
        return MatchBits.receive(context: context, source: source.rank, tag: t)
    }

    /// A receive's match bits and who can send it (see `sender`).
    @inline(__always)
    func receiveTarget(_ source: Source, _ tag: Tag) throws(MPIError) -> (info: UInt64, mask: UInt64, from: MXSender) {
        let (info, mask) = try receiveBits(source, tag)
        return (info, mask, try sender(source))
    }

    func status(_ st: MXStatus) -> Status {
        Status(source: MatchBits.source(st.matchInfo), tag: MatchBits.tag(st.matchInfo), byteCount: st.messageLength,
               isCancelled: st.isCancelled)
    }

    /// Receives into the caller's buffer (MPI_Recv). A longer message is an error of class
    /// `truncate` (nothing past the buffer is written).
    @discardableResult
    @inlinable
    public func receive<T: BitwiseCopyable>(into buffer: UnsafeMutableBufferPointer<T>, from source: Source = .any,
                                            tag: Tag = .any) throws(MPIError) -> Status {
        try receiveRaw(UnsafeMutableRawBufferPointer(buffer), from: source, tag: tag)
    }

    /// The receive itself, not generic.
    @usableFromInline
    func receiveRaw(_ raw: UnsafeMutableRawBufferPointer, from source: Source, tag: Tag) throws(MPIError) -> Status {
        let (info, mask, from) = try receiveTarget(source, tag)
        let st: MXStatus
        do { st = try waitChannel(try endpoint.irecv(raw, matchInfo: info, mask: mask, from: from)) } catch {
            throw failure(error, peer: source.rank)
        }
        guard !st.isTruncated else {
            throw MPIError(.truncate, "a message of \(st.messageLength) bytes from rank \(MatchBits.source(st.matchInfo)) does not fit a buffer of \(raw.count)")
        }
        return status(st)
    }

    @discardableResult
    @inlinable
    public func receive<T: BitwiseCopyable>(into array: inout [T], from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status {
        try array.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try receiveRaw(UnsafeMutableRawBufferPointer(b), from: source, tag: tag) }
    }

    /// Receives a message of any length: probes for it, then receives exactly its elements.
    public func receive<T: BitwiseCopyable>(_: T.Type, from source: Source = .any, tag: Tag = .any) throws(MPIError) -> ([T], Status) {
        try receiveProbed(T.self, try probe(from: source, tag: tag))
    }

    /// Receives exactly the message `probed` describes.
    func receiveProbed<T: BitwiseCopyable>(_: T.Type, _ probed: Status) throws(MPIError) -> ([T], Status) {
        guard let n = probed.count(of: T.self) else {
            throw MPIError(.count, "a message of \(probed.byteCount) bytes is not a whole number of \(T.self) (\(MemoryLayout<T>.stride) bytes each)")
        }
        var values = [T](unsafeUninitializedCapacity: n) { _, count in count = n }
        // The probed message is the one received: same source and tag, and per-pair order.
        let st = try receive(into: &values, from: .rank(probed.source), tag: .value(probed.tag))
        return (values, st)
    }

    // MARK: objects

    /// Sends any Encodable value (the object path: a compact binary encoding, not JSON).
    /// Values that are also BitwiseCopyable take the typed path instead.
    @_disfavoredOverload
    public func send<T: Encodable>(_ value: T, to destination: Int, tag: Int = 0) throws(MPIError) {
        let bytes: [UInt8]
        do { bytes = try BinaryCoding.encode(value) } catch { throw MPIError(.other, "cannot encode \(T.self): \(error)") }
        try send(bytes, to: destination, tag: tag)
    }

    /// Receives one Decodable value sent with the object path.
    @_disfavoredOverload
    public func receive<T: Decodable>(_: T.Type, from source: Source = .any, tag: Tag = .any) throws(MPIError) -> T {
        let (bytes, _) = try receiveProbed(UInt8.self, try probe(from: source, tag: tag))
        do { return try BinaryCoding.decode(T.self, from: bytes) } catch let e as MPIError { throw e } catch {
            throw MPIError(.other, "the message is not a \(T.self): \(error)")
        }
    }

    // MARK: async

    /// Receives without blocking a thread: the task suspends between looks.
    public func receive<T: BitwiseCopyable>(_: T.Type, from source: Source = .any, tag: Tag = .any) async throws -> ([T], Status) {
        while true {
            if let st = try iprobe(from: source, tag: tag) { return try receiveProbed(T.self, st) }
            await Task.yield()
        }
    }

    // MARK: probing

    /// Waits for a matching message and describes it without receiving it (MPI_Probe).
    public func probe(from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status {
        let (info, mask, from) = try receiveTarget(source, tag)
        return status(try mx(peer: source.rank) { () throws(MXError) in
            if !engine.isIdle { try endpoint.wait(until: CollectiveEngine.Probed(engine: engine, info: info, mask: mask)) }
            return try endpoint.probe(matchInfo: info, mask: mask, from: from)
        })
    }

    /// A matching message's description if one has arrived (MPI_Iprobe).
    public func iprobe(from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status? {
        let (info, mask) = try receiveBits(source, tag)
        return try mx { () throws(MXError) in try endpoint.iprobe(matchInfo: info, mask: mask) }.map(status)
    }
}
