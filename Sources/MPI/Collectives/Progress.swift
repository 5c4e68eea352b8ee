import MyriXen

/// The progress engine of one process's collectives: every schedule in flight, on any
/// communicator. Blocking calls run theirs to completion here; non-blocking ones advance
/// whenever the rank calls into the library (a wait, test, probe, send or receive, of either
/// kind), so collectives and point-to-point operations in flight together all finish.
///
/// Waiting goes through the endpoint's own wait (`MXEndpoint.wait(until:)`): a brief spin,
/// then yielding, then sleeping on the event channel, so oversubscribed ranks progress.
@_spi(Testing) public final class CollectiveEngine {
    var active: ContiguousArray<Schedule> = []
    /// Failure reports sent, until the channel took them (their bytes live here meanwhile).
    var reports: [(handle: MXRequest, bytes: [UInt8])] = []
    var polls: UInt32 = 0
    var unexpectedSeen = 0
    unowned(unsafe) let endpoint: MXEndpoint
    /// The host of every world rank (see `HostLayout`), once learnt.
    public var layoutState = LayoutState.unknown
    public var hostOfWorldRank: [Int] = []

    init(endpoint: MXEndpoint) { self.endpoint = endpoint }

    @inline(__always) var isIdle: Bool { active.isEmpty && reports.isEmpty }

    /// Whether `s` is among the schedules in flight (by index: see Schedule.round).
    func isActive(_ s: Schedule) -> Bool {
        var i = 0
        while i < active.count {
            if active[i] === s { return true }
            i += 1
        }
        return false
    }

    /// Advances everything in flight once (cheap when nothing is).
    @inline(__always)
    func poll() { if !isIdle { advanceAll() } }

    func advanceAll() {
        polls &+= 1
        // A failure report is an unexpected message: look for one when one came since the
        // last look, and now and then while some wait (a report may sit behind others).
        let unexpected = endpoint.unexpectedCount
        let lookForReports = unexpected != unexpectedSeen || (polls & 0x3F == 0 && unexpected > 0)
        unexpectedSeen = unexpected
        var i = 0
        while i < active.count {
            let s = active[i]
            if lookForReports { s.checkReports() }
            if s.advance() { active.remove(at: i) } else { i += 1 }
        }
        if !reports.isEmpty {
            reports.removeAll { r in
                do { return try endpoint.test(r.handle) != nil } catch { return true }
            }
        }
    }

    /// Until `schedule` is over.
    struct ScheduleOver: MXWaitCondition {
        unowned(unsafe) let engine: CollectiveEngine
        unowned(unsafe) let schedule: Schedule
        func holds(_: MXEndpoint) -> Bool {
            engine.advanceAll()
            return schedule.isDone
        }
    }

    /// Until a channel request is done, or nothing else is in flight (then the plain wait on
    /// the request takes over).
    struct ChannelDone: MXWaitCondition {
        unowned(unsafe) let engine: CollectiveEngine
        let handle: MXRequest
        func holds(_ endpoint: MXEndpoint) -> Bool {
            engine.advanceAll()
            return endpoint.isDone(handle) || engine.isIdle
        }
    }

    /// Until a matching message arrived, or nothing else is in flight.
    struct Probed: MXWaitCondition {
        unowned(unsafe) let engine: CollectiveEngine
        let info: UInt64
        let mask: UInt64
        func holds(_ endpoint: MXEndpoint) -> Bool {
            engine.advanceAll()
            return engine.isIdle || (try? endpoint.iprobe(matchInfo: info, mask: mask)) != nil
        }
    }
}

/// The tag layout on a communicator's collective context: the call's sequence number in the
/// low 23 bits; the top bit marks a failure report about that call.
enum CollectiveTag {
    static let reportBit = 1 << (Int(MatchBits.tagBits) - 1)
    static let sequenceMask = reportBit - 1
    static let reportPrefix = "the collective failed on another rank: "
}

extension Communicator {
    /// The next call's sequence number (every member counts the same calls in the same order,
    /// as MPI requires of collectives).
    @inline(__always)
    func nextSequence() -> Int {
        collectiveSequence = (collectiveSequence + 1) & CollectiveTag.sequenceMask
        return collectiveSequence
    }

    /// Resolves (connects, the first time) every peer the plan talks to, before it runs: a
    /// schedule never connects from inside the engine.
    func resolvePeers(of s: Schedule) throws(MPIError) {
        var i = 0
        while i < s.steps.count { // by index: see Schedule.round
            switch s.steps[i] {
            case let .send(peer, _, _), let .receive(peer, _, _): _ = try address(peer)
            default: break
            }
            i += 1
        }
    }

    /// Plans and runs a blocking collective on this communicator's own reusable schedule.
    @inline(__always)
    func runBlocking(_ name: StaticString, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?,
                     plan: (Schedule) throws(MPIError) -> Void) throws(MPIError) {
        try ensureUsable()
        try learnLayoutIfNeeded()
        let s = blockingSchedule
        s.reset(name, sequence: nextSequence(), input: input, output: output)
        do { try plan(s) } catch {
            // A mistake of this rank's arguments: the others hear of it rather than wait.
            s.isDone = true
            reportCollectiveFailure(error, sequence: s.sequence, connecting: true)
            throw error
        }
        try resolvePeers(of: s)
        try run(s)
    }

    /// Starts `s` and runs it to its end.
    func run(_ s: Schedule) throws(MPIError) {
        s.start()
        try complete(s)
    }

    /// Runs a started schedule to its end; throws its failure.
    func complete(_ s: Schedule) throws(MPIError) {
        if !s.isDone {
            if !engine.isActive(s) { engine.active.append(s) }
            do { try endpoint.wait(until: CollectiveEngine.ScheduleOver(engine: engine, schedule: s)) } catch {
                s.fail(failure(error, peer: nil))
            }
        }
        if let e = s.error { throw e }
    }

    /// Plans and starts a non-blocking collective on a schedule of its own; `finish` makes the
    /// request's result once it is over. The memory the call works on lives in `keep`.
    func startCollective<V>(_ name: StaticString, input: UnsafeRawPointer?, output: UnsafeMutableRawPointer?,
                            keep: [AnyObject], plan: (Schedule) throws(MPIError) -> Void,
                            finish: @escaping () throws(MPIError) -> V) throws(MPIError) -> Request<V> {
        try ensureUsable()
        try learnLayoutIfNeeded()
        let s = Schedule(comm: self)
        s.reset(name, sequence: nextSequence(), input: input, output: output)
        s.keepAlive = keep
        do { try plan(s) } catch {
            reportCollectiveFailure(error, sequence: s.sequence, connecting: true)
            throw error
        }
        try resolvePeers(of: s)
        s.start()
        if !s.isDone { engine.active.append(s) }
        return Request(comm: self, schedule: s, finish: finish)
    }

    // MARK: point-to-point while collectives are in flight

    /// Waits for a channel request, advancing collectives in flight meanwhile.
    @inline(__always)
    func waitChannel(_ h: MXRequest) throws(MXError) -> MXStatus {
        if engine.isIdle { return try endpoint.wait(h) }
        try endpoint.wait(until: CollectiveEngine.ChannelDone(engine: engine, handle: h))
        return try endpoint.wait(h)
    }

    // MARK: failure reports

    /// Tells every other member (that this rank talks to already) that call `sequence` failed
    /// here, so none waits forever for a message this rank will not send.
    /// With `connecting`, also members not talked to yet (never from inside the engine).
    func reportCollectiveFailure(_ e: MPIError, sequence: Int, connecting: Bool = false) {
        // A report passed on keeps the words of the rank that saw the failure.
        let origin = e.message.hasPrefix(CollectiveTag.reportPrefix)
            ? String(e.message.dropFirst(CollectiveTag.reportPrefix.count)) : "\(describe(rank)): \(e.message)"
        let text = Array("\(e.errorClass.rawValue)\n\(origin)".utf8.prefix(1024))
        let info = MatchBits.info(context: collectiveContext, source: rank, tag: CollectiveTag.reportBit | sequence)
        for r in 0..<size where r != rank {
            guard let a = addresses[r] ?? (connecting ? try? address(r) : nil) else { continue }
            let h = text.withUnsafeBytes { try? endpoint.isend($0, to: a, matchInfo: info) }
            // The channel may still read the bytes (a full ring queues the send): keep them.
            if let h { engine.reports.append((h, text)) }
        }
    }

    /// The failure another member reported about call `sequence`, if one came.
    func collectiveFailureReport(sequence: Int) -> MPIError? {
        let (info, mask) = MatchBits.receive(context: collectiveContext, source: nil, tag: CollectiveTag.reportBit | sequence)
        guard let st = try? endpoint.iprobe(matchInfo: info, mask: mask) else { return nil }
        var bytes = [UInt8](repeating: 0, count: st.messageLength)
        let got = bytes.withUnsafeMutableBytes { raw in
            (try? endpoint.irecv(raw, matchInfo: st.matchInfo, mask: .max)).flatMap { try? endpoint.wait($0) }
        }
        guard got != nil else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        let parts = text.split(separator: "\n", maxSplits: 1).map(String.init)
        let cls = parts.first.flatMap(MPIError.ErrorClass.init(rawValue:)) ?? .other
        return MPIError(cls, CollectiveTag.reportPrefix + (parts.count > 1 ? parts[1] : text))
    }
}
