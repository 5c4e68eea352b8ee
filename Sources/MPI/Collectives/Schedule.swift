import MyriXen

/// Where a step of a schedule reads or writes: the caller's input, the caller's output or the
/// schedule's own scratch memory, at a byte offset.
struct Place {
    enum Space: UInt8 { case input, output, scratch }
    var space: Space
    var offset: Int

    static func input(_ offset: Int = 0) -> Place { Place(space: .input, offset: offset) }
    static func output(_ offset: Int = 0) -> Place { Place(space: .output, offset: offset) }
    static func scratch(_ offset: Int = 0) -> Place { Place(space: .scratch, offset: offset) }

    /// `bytes` further on in the same space.
    func advanced(by bytes: Int) -> Place { Place(space: space, offset: offset + bytes) }
}

/// One step of a collective (MPICH's MPIR_Sched, libnbc's schedule): the sends and receives of
/// a round are posted together when the round starts; its local steps (reductions, copies) run
/// once all of them are over; then the next round starts.
enum Step {
    case send(peer: Int, from: Place, bytes: Int)
    case receive(peer: Int, into: Place, bytes: Int)
    /// `out = a op b` over `elements` elements; `a` holds the lower ranks' contribution.
    case reduce(a: Place, b: Place, out: Place, elements: Int)
    case copy(from: Place, to: Place, bytes: Int)
    /// The end of a round.
    case round
}

/// A collective operation as rounds of steps, run by the communicator's `CollectiveEngine`:
/// to completion by a blocking call, or a little whenever the rank calls into the library for
/// a non-blocking one. The algorithms (one file each) only plan: they append steps.
///
/// Every message of one call carries the call's sequence number as its tag on the
/// communicator's collective context, so calls in flight together never match each other's
/// messages (nor point-to-point traffic); between two ranks the messages of one call are
/// matched in the order sent, as MPI orders every pair's messages.
///
/// A blocking call reuses its communicator's schedule: steps, pending requests and scratch
/// memory keep their capacity, so a call in the steady state allocates nothing.
final class Schedule {
    /// The communicator outlives the schedule: a blocking call's schedule belongs to it, a
    /// non-blocking one's request keeps it alive.
    unowned(unsafe) let comm: Communicator

    // The plan.
    var steps: ContiguousArray<Step> = []
    var input: UnsafeRawPointer?
    var output: UnsafeMutableRawPointer?
    var reducer: ((UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void)?
    var elementSize = 1
    /// What the operation is, for errors ("allreduce").
    var name: StaticString = ""
    /// Match info of this call's messages, minus the source rank (added per message).
    var baseInfo: UInt64 = 0
    var sequence = 0

    // The ranks the algorithm being planned runs among, as 0..<size: every member of the
    // communicator, or (for a phase of a host-aware algorithm) a subset, such as the ranks of
    // one host or one leader per host. Peers named in steps are ranks of this view; the steps
    // store ranks of the communicator.
    var view: [Int]?
    /// The view's size and this rank's place in it.
    var size = 0
    var rank = 0
    /// While planning a phase that works on the output only: `.input()` means the output.
    var inputIsOutput = false
    /// Where the view's input and output are, when not this rank's own (`within`): a
    /// leader's partial result in scratch, between the levels of a two-level algorithm.
    var inputAt: Place?
    var outputAt: Place?

    // Scratch memory, grown to the largest call and kept.
    var scratch: UnsafeMutableRawPointer
    var scratchCapacity = 0
    var scratchUsed = 0

    // Execution.
    struct Pending {
        var handle: MXRequest
        var peer: Int
        /// Bytes a receive expects (-1 for a send).
        var expected: Int
    }
    var pending: ContiguousArray<Pending> = []
    /// The next step not yet started, and where the current round's local steps start and end.
    var next = 0
    var localStart = 0
    var localEnd = 0
    var isDone = true
    var error: MPIError?
    /// Objects a non-blocking call's memory belongs to, kept until it is over.
    var keepAlive: [AnyObject] = []

    init(comm: Communicator) {
        self.comm = comm
        scratch = .allocate(byteCount: 64, alignment: 64)
        scratchCapacity = 64
    }

    deinit { scratch.deallocate() }

    // MARK: planning

    /// Clears the plan (keeping every capacity) for a new call of `name` with sequence `seq`.
    func reset(_ name: StaticString, sequence seq: Int, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?) {
        steps.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
        keepAlive.removeAll(keepingCapacity: true)
        self.name = name
        self.input = input
        self.output = output
        reducer = nil
        elementSize = 1
        scratchUsed = 0
        sequence = seq
        baseInfo = MatchBits.info(context: comm.collectiveContext, source: 0, tag: seq)
        next = 0
        error = nil
        isDone = false
        view = nil
        size = comm.size
        rank = comm.rank
        inputIsOutput = false
        inputAt = nil
        outputAt = nil
    }

    /// Plans `body` among `members` (ranks of the communicator, this rank among them), in
    /// place on the output with `onOutput`, or with its input and output elsewhere (`input`,
    /// `output`: places of the whole communicator's schedule, scratch reserved before); then
    /// back to the whole communicator.
    func within(_ members: [Int], onOutput: Bool = false, input: Place? = nil, output: Place? = nil, _ body: () -> Void) {
        let saved = (view, size, rank, inputIsOutput, inputAt, outputAt)
        view = members
        size = members.count
        rank = members.firstIndex(of: comm.rank)!
        inputIsOutput = onOutput || inputIsOutput
        if let i = input { inputAt = i }
        if let o = output { outputAt = o }
        body()
        (view, size, rank, inputIsOutput, inputAt, outputAt) = saved
    }

    @inline(__always) func member(_ r: Int) -> Int { view?[r] ?? r }
    @inline(__always) func map(_ p: Place) -> Place {
        switch p.space {
        case .input:
            if let i = inputAt { return i.advanced(by: p.offset) }
            return inputIsOutput ? map(Place(space: .output, offset: p.offset)) : p
        case .output:
            if let o = outputAt { return o.advanced(by: p.offset) }
            return p
        case .scratch:
            return p
        }
    }

    func reduce<T>(with op: Operation<T>) {
        reducer = op.raw
        elementSize = MemoryLayout<T>.stride
    }

    /// Reserves `bytes` of scratch memory (64-byte aligned) for this call.
    func scratch(_ bytes: Int) -> Place {
        let at = scratchUsed
        scratchUsed += (bytes + 63) & ~63
        if scratchUsed > scratchCapacity {
            // Grown before the call runs, while no step points into it yet.
            let grown = UnsafeMutableRawPointer.allocate(byteCount: scratchUsed, alignment: 64)
            scratch.deallocate()
            scratch = grown
            scratchCapacity = scratchUsed
        }
        return .scratch(at)
    }

    /// Peers are ranks of the view (see `within`).
    @inline(__always) func send(to peer: Int, from place: Place, bytes: Int) {
        steps.append(.send(peer: member(peer), from: map(place), bytes: bytes))
    }
    @inline(__always) func receive(from peer: Int, into place: Place, bytes: Int) {
        steps.append(.receive(peer: member(peer), into: map(place), bytes: bytes))
    }
    @inline(__always) func reduce(_ a: Place, _ b: Place, into out: Place, elements: Int) {
        if elements > 0 { steps.append(.reduce(a: map(a), b: map(b), out: map(out), elements: elements)) }
    }
    @inline(__always) func copy(from: Place, to: Place, bytes: Int) {
        if bytes > 0 { steps.append(.copy(from: map(from), to: map(to), bytes: bytes)) }
    }
    /// Ends the round (a no-op after an empty one). (By index, as every walk of `steps`:
    /// Collection's generic `last` or iterator allocate a coroutine frame per element in an
    /// unspecialized build.)
    @inline(__always) func round() {
        let n = steps.count
        guard n > 0 else { return }
        if case .round = steps[n - 1] { return }
        steps.append(.round)
    }

    // MARK: running

    @inline(__always)
    func pointer(_ p: Place) -> UnsafeMutableRawPointer {
        switch p.space {
        case .input: return UnsafeMutableRawPointer(mutating: input ?? UnsafeRawPointer(Schedule.nowhere)) + p.offset
        case .output: return (output ?? Schedule.nowhere) + p.offset
        case .scratch: return scratch + p.offset
        }
    }

    /// Where zero-byte messages point (the channel wants an address even for nothing).
    nonisolated(unsafe) static let nowhere = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)

    /// Starts the first round. Addresses of the peers were resolved while planning
    /// (`Communicator.planPeers`), so nothing here connects or blocks.
    func start() {
        next = 0
        startRound()
        _ = advance()
    }

    /// Posts the sends and receives of the round at `next`, and notes its local steps.
    func startRound() {
        let endpoint = comm.endpoint
        let from = UInt64(comm.rank) << MatchBits.tagBits
        var i = next
        localStart = -1
        while i < steps.count {
            switch steps[i] {
            case let .send(peer, place, bytes):
                do {
                    let h = try endpoint.isend(UnsafeRawBufferPointer(start: pointer(place), count: bytes),
                                               to: comm.addresses[peer]!, matchInfo: baseInfo | from)
                    pending.append(Pending(handle: h, peer: peer, expected: -1))
                } catch { fail(comm.failure(error, peer: peer)); return }
            case let .receive(peer, place, bytes):
                do {
                    let addr = comm.addresses[peer]!
                    let h = try endpoint.irecv(UnsafeMutableRawBufferPointer(start: pointer(place), count: bytes),
                                               matchInfo: baseInfo | UInt64(peer) << MatchBits.tagBits, mask: .max,
                                               from: .peer(addr))
                    pending.append(Pending(handle: h, peer: peer, expected: bytes))
                } catch { fail(comm.failure(error, peer: peer)); return }
            case .reduce, .copy:
                if localStart < 0 { localStart = i }
            case .round:
                localEnd = i
                next = i + 1
                if localStart < 0 { localStart = i }
                return
            }
            i += 1
        }
        localEnd = i
        if localStart < 0 { localStart = i }
        next = i
    }

    /// Runs the local steps of the round that just finished.
    func runLocalSteps() {
        var i = localStart
        while i < localEnd {
            switch steps[i] {
            case let .reduce(a, b, out, elements):
                reducer!(pointer(a), pointer(b), pointer(out), elements)
            case let .copy(from, to, bytes):
                let src = pointer(from), dst = pointer(to)
                if src != dst { dst.copyMemory(from: src, byteCount: bytes) }
            default: break
            }
            i += 1
        }
    }

    /// Advances as far as it can without waiting; true once the schedule is over (done or failed).
    @inline(__always)
    func advance() -> Bool {
        if isDone { return true }
        return advanceSlow()
    }

    func advanceSlow() -> Bool {
        let endpoint = comm.endpoint
        while true {
            var k = 0
            while k < pending.count {
                let p = pending[k]
                let st: MXStatus?
                do { st = try endpoint.test(p.handle) } catch {
                    pending.remove(at: k)
                    fail(comm.failure(error, peer: p.peer))
                    return true
                }
                guard let s = st else { k += 1; continue }
                pending.remove(at: k)
                if p.expected >= 0 && (s.isTruncated || s.messageLength != p.expected) {
                    let sender = comm.describe(p.peer)
                    let e = s.isTruncated
                        ? MPIError(.truncate, "\(name): \(sender) sent \(s.messageLength) bytes where this rank expects \(p.expected) (are the counts the same on every rank?)")
                        : MPIError(.count, "\(name): \(sender) sent \(s.messageLength) bytes where this rank expects \(p.expected) (are the counts the same on every rank?)")
                    fail(e, tellOthers: true)
                    return true
                }
            }
            if !pending.isEmpty { return false }
            runLocalSteps()
            if next >= steps.count {
                isDone = true
                return true
            }
            startRound()
            if isDone { return true }
        }
    }

    /// Ends the schedule with `e`: receives still posted are cancelled (nothing is written
    /// into the caller's memory afterwards). With `tellOthers`, every other member learns of
    /// it (a mismatch one rank saw, that the others would wait on forever).
    func fail(_ e: MPIError, tellOthers: Bool = false) {
        let endpoint = comm.endpoint
        for p in pending where p.expected >= 0 {
            if (try? endpoint.cancel(p.handle)) == true { _ = try? endpoint.wait(p.handle) }
        }
        pending.removeAll(keepingCapacity: true)
        error = e
        isDone = true
        if tellOthers { comm.reportCollectiveFailure(e, sequence: sequence) }
    }

    /// Whether another member reported this call failed (see `fail`); then it fails here too.
    func checkReports() {
        guard !isDone, let e = comm.collectiveFailureReport(sequence: sequence) else { return }
        // Passed on to the peers of this call: in a tree, those below wait for this rank.
        fail(e, tellOthers: true)
    }
}
