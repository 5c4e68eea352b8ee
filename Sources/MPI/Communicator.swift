import MyriXen
import Bootstrap

/// Where a receive takes messages from.
public enum Source: ExpressibleByIntegerLiteral, Equatable, Sendable {
    case rank(Int)
    case any
    public init(integerLiteral value: Int) { self = .rank(value) }
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

    init(world: MXWorld, context: UInt16, ranks: [Int], myRank: Int) {
        self.world = world
        self.context = context
        members = ranks
        rank = myRank
    }

    var endpoint: MXEndpoint { world.endpoint }

    func check(destination: Int) throws(MPIError) {
        guard destination >= 0 && destination < size else {
            throw MPIError(.rank, "rank \(destination) is not in this communicator of \(size)")
        }
    }

    func check(tag: Int) throws(MPIError) {
        guard tag >= 0 && tag <= MatchBits.maxTag else {
            throw MPIError(.tag, "tag \(tag) is outside 0...\(MatchBits.maxTag)")
        }
    }

    func address(_ r: Int) throws(MPIError) -> MXEndpointAddress {
        do { return try world.address(of: members[r]) } catch let e as MXError { throw MPIError(e) } catch {
            throw MPIError(.intern, "\(error)")
        }
    }

    func mx<R>(_ body: () throws(MXError) -> R) throws(MPIError) -> R {
        do { return try body() } catch { throw MPIError(error) }
    }

    // MARK: sending

    /// Sends `buffer` to `destination` (MPI_Send, standard mode).
    public func send<T: BitwiseCopyable>(_ buffer: UnsafeBufferPointer<T>, to destination: Int, tag: Int = 0) throws(MPIError) {
        try check(destination: destination)
        try check(tag: tag)
        let to = try address(destination)
        let info = MatchBits.info(context: context, source: rank, tag: tag)
        let raw = UnsafeRawBufferPointer(buffer)
        try mx { () throws(MXError) in _ = try endpoint.wait(try endpoint.isend(raw, to: to, matchInfo: info)) }
    }

    public func send<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws(MPIError) {
        try values.withUnsafeBufferPointer { (b) throws(MPIError) in try send(b, to: destination, tag: tag) }
    }

    public func send<T: BitwiseCopyable>(_ value: T, to destination: Int, tag: Int = 0) throws(MPIError) {
        try send([value], to: destination, tag: tag)
    }

    // MARK: receiving

    func receiveBits(_ source: Source, _ tag: Tag) throws(MPIError) -> (info: UInt64, mask: UInt64) {
        var s: Int?
        if case let .rank(r) = source {
            guard r >= 0 && r < size else { throw MPIError(.rank, "source rank \(r) is not in this communicator of \(size)") }
            s = r
        }
        var t: Int?
        if case let .value(v) = tag { try check(tag: v); t = v }
        return MatchBits.receive(context: context, source: s, tag: t)
    }

    func status(_ st: MXStatus) -> Status {
        Status(source: MatchBits.source(st.matchInfo), tag: MatchBits.tag(st.matchInfo), byteCount: st.messageLength,
               isCancelled: st.isCancelled)
    }

    /// Receives into the caller's buffer (MPI_Recv). A longer message is an error of class
    /// `truncate` (nothing past the buffer is written).
    @discardableResult
    public func receive<T: BitwiseCopyable>(into buffer: UnsafeMutableBufferPointer<T>, from source: Source = .any,
                                            tag: Tag = .any) throws(MPIError) -> Status {
        let (info, mask) = try receiveBits(source, tag)
        let raw = UnsafeMutableRawBufferPointer(buffer)
        let st = try mx { () throws(MXError) in try endpoint.wait(try endpoint.irecv(raw, matchInfo: info, mask: mask)) }
        guard !st.isTruncated else {
            throw MPIError(.truncate, "a message of \(st.messageLength) bytes from rank \(MatchBits.source(st.matchInfo)) does not fit a buffer of \(raw.count)")
        }
        return status(st)
    }

    @discardableResult
    public func receive<T: BitwiseCopyable>(into array: inout [T], from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status {
        try array.withUnsafeMutableBufferPointer { (b) throws(MPIError) in try receive(into: b, from: source, tag: tag) }
    }

    /// Receives a message of any length: probes for it, then receives exactly its elements.
    public func receive<T: BitwiseCopyable>(_: T.Type, from source: Source = .any, tag: Tag = .any) throws(MPIError) -> ([T], Status) {
        let probed = try probe(from: source, tag: tag)
        guard let n = probed.count(of: T.self) else {
            throw MPIError(.count, "a message of \(probed.byteCount) bytes is not a whole number of \(T.self) (\(MemoryLayout<T>.stride) bytes each)")
        }
        var values = [T](unsafeUninitializedCapacity: n) { _, count in count = n }
        // The probed message is the one received: same source and tag, and per-pair order.
        let st = try receive(into: &values, from: .rank(probed.source), tag: .value(probed.tag))
        return (values, st)
    }

    // MARK: probing

    /// Waits for a matching message and describes it without receiving it (MPI_Probe).
    public func probe(from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status {
        let (info, mask) = try receiveBits(source, tag)
        return status(try mx { () throws(MXError) in try endpoint.probe(matchInfo: info, mask: mask) })
    }

    /// A matching message's description if one has arrived (MPI_Iprobe).
    public func iprobe(from source: Source = .any, tag: Tag = .any) throws(MPIError) -> Status? {
        let (info, mask) = try receiveBits(source, tag)
        return try mx { () throws(MXError) in try endpoint.iprobe(matchInfo: info, mask: mask) }.map(status)
    }

    /// Waits for every rank (MPI_Barrier), through the process manager for now.
    public func barrier() throws(MPIError) {
        guard context == 0 else {
            throw MPIError(.comm, "barrier on a communicator other than the world is not available yet")
        }
        do { try world.pmi.barrier() } catch { throw MPIError(.other, "\(error)") }
    }
}
