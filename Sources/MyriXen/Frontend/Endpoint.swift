#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// An endpoint: this process's private virtual interface on an emulated Myri-10G board.
///
/// Control (connect, registration) goes through the backend; data goes directly through the
/// granted rings and, for large messages, a single-copy pull from the sender's registered
/// memory. An endpoint is used from one thread at a time. Buffers handed to `isend`/`irecv`
/// must stay valid until their request completes.
public final class MXEndpoint {
    let connection: BackendConnection
    let core: UnsafeMutablePointer<EndpointCore>
    public let board: Int
    public let endpointID: Int
    public let nicID: UInt64
    public let session: UInt32
    public let key: UInt32
    public let hostname: String
    public let options: MXEndpointOptions
    /// The grant references of this endpoint's two pages (as the backend gave them).
    let pageGrants: (protected: GrantRef, unprotected: GrantRef)
    let protectedMapping: (UnsafeMutableRawPointer, Int)
    let unprotectedMapping: (UnsafeMutableRawPointer, Int)
    struct PeerKey: Hashable { let nic: UInt64; let endpoint: UInt16 }
    var peerIndex: [PeerKey: Int32] = [:]
    /// Connects in flight (request -> control token) and cancelled ones still to be answered.
    /// Touched only when `hot.controlWork` says there are some.
    var pendingConnects: [Int32: UInt32] = [:] { didSet { updateControlWork() } }
    var abandonedConnects: [UInt32] = [] { didSet { updateControlWork() } }
    /// Set once the backend is gone; read only when `hot.failed`.
    var failure: MXError?
    /// Shared segments mapped here, by key (unmapped at close or when left).
    var sharedMappings: [(key: UInt64, pointer: UnsafeMutableRawPointer, size: Int)] = []

    /// The flags every call reads, behind a pointer: no exclusivity check, no reference count.
    struct HotState {
        var closed = false
        var failed = false
        var controlWork = false
        var progressCalls: UInt32 = 0
        var lastHealthCheck: UInt64 = 0
    }
    let hot: UnsafeMutablePointer<HotState>

    /// Whether `close()` was called.
    public var isClosed: Bool { hot.pointee.closed }

    func updateControlWork() { hot.pointee.controlWork = !pendingConnects.isEmpty || !abandonedConnects.isEmpty }

    /// `wireSocket`: the endpoint's own socket on the wire to other hosts (-1 without a wire);
    /// the endpoint owns it from here on, even when the init fails.
    init(connection: BackendConnection, opened: OpenedEndpoint, wireSocket: Int32, key: UInt32, hostname: String,
         options: MXEndpointOptions) throws(MXError) {
        guard options.rendezvousThreshold >= 0 else {
            closeDescriptor(wireSocket)
            throw MXError(.badParameter, "the rendezvous threshold must be >= 0, not \(options.rendezvousThreshold)")
        }
        if let v = getenv(MXDefaults.localPathEnvironment), MXLocalPath(parsing: String(cString: v)) == nil {
            closeDescriptor(wireSocket)
            throw MXError(.badParameter, "\(MXDefaults.localPathEnvironment) must be \(MXLocalPath.valuesInWords), not '\(String(cString: v))'")
        }
        if case .pieces(let n) = options.localPath, n < 0 {
            closeDescriptor(wireSocket)
            throw MXError(.badParameter, "the local path's copy limit must be >= 0 bytes, not \(n)")
        }
        self.connection = connection
        board = Int(opened.board)
        endpointID = Int(opened.endpoint)
        nicID = opened.nicID
        session = opened.session
        self.key = key
        self.hostname = hostname
        self.options = options
        pageGrants = (opened.protectedPage, opened.unprotectedPage)
        hot = .allocate(capacity: 1)
        hot.initialize(to: HotState(lastHealthCheck: monotonicNanoseconds()))
        let maps: [(pointer: UnsafeMutableRawPointer, size: Int)]
        do { maps = try connection.mapGrants([opened.protectedPage, opened.unprotectedPage]) } catch {
            hot.deallocate()
            closeDescriptor(wireSocket)
            throw error
        }
        protectedMapping = maps[0]
        unprotectedMapping = maps[1]
        core = .allocate(capacity: 1)
        core.initialize(to: EndpointCore(protectedPage: maps[0].pointer, unprotected: maps[1].pointer,
                                         threshold: options.rendezvousThreshold,
                                         localPath: options.localPath))
        core.pointee.wire.fd = wireSocket
        core.pointee.wire.frameLimit = Int(opened.wireFrameLimit)
        _ = cmx_allow_pull_from_any()
    }

    deinit {
        close()
        hot.deallocate()
    }

    /// Closes the endpoint: the backend revokes its grants and tells its peers.
    /// Pending requests are dropped.
    public func close() {
        guard !hot.pointee.closed else { return }
        lingerOnWire()
        hot.pointee.closed = true
        if !hot.pointee.failed { _ = try? connection.call(.closeEndpoint) }
        connection.close()
        core.pointee.destroy()
        core.deinitialize(count: 1)
        core.deallocate()
        SharedMemory.unmap(protectedMapping.0, size: protectedMapping.1)
        SharedMemory.unmap(unprotectedMapping.0, size: unprotectedMapping.1)
        for m in sharedMappings { SharedMemory.unmap(m.pointer, size: m.size) }
        sharedMappings = []
    }

    /// Frames toward peers of other hosts that are not acked yet are this endpoint's to
    /// resend (an eager send completed when its frame was queued): close drains them first,
    /// up to `MXWire.lingerNanoseconds`, as a NIC drains its queue before the port closes.
    func lingerOnWire() {
        try? drain(timeout: .nanoseconds(Int64(MXWire.lingerNanoseconds)))
    }

    /// Waits until everything this endpoint sent toward peers of other hosts is through:
    /// every frame acked, every pull piece, pull request and notify sent, or the peer gone
    /// (closed, died, or its host declared lost by the backend after the host timeout).
    /// Eager sends complete once queued, so a program that is about to stop talking (MPI's
    /// finalize) drains first: frames the wire lost are still resent meanwhile. Returns at once
    /// without peers on other hosts. On timeout throws `timeout`; the frames stay queued.
    public func drain(timeout: Duration? = nil) throws(MXError) {
        try ensureUsable()
        guard core.pointee.wire.linkCount > 0 else { return }
        // What this endpoint owes its peers goes out whatever the wait's outcome.
        defer { if !hot.pointee.failed { core.pointee.flushWireAcks() } }
        do {
            try block(deadline: deadline(timeout), until: WireDrained())
        } catch where error.code == .timeout {
            throw MXError(.timeout, "frames toward peers of other hosts were still unacknowledged after \(timeout!)")
        }
    }

    /// Keeps the endpoint working until `fd` is readable: acks and resends on the wire,
    /// backend events, peers attaching or going away. For a program that waits on something
    /// outside the channel layer (a rank waiting for its process manager's answer), so its
    /// peers on other hosts are never left without acks and resends meanwhile. Sleeps on the
    /// event channel, the wire and `fd` together: an idle wait costs no CPU. On a closed or
    /// failed endpoint it simply waits for `fd`.
    public func progress(untilReadable fd: Int32) {
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if hot.pointee.closed || hot.pointee.failed {
                if poll(&p, 1, -1) >= 0 || errno != EINTR { return }
                continue
            }
            progressOnce()
            if poll(&p, 1, 0) > 0 { return }
            if sleep(until: nil, watching: fd) { return }
        }
    }

    @inline(__always)
    func ensureUsable() throws(MXError) {
        try ensureOpen()
        if hot.pointee.failed { throw failure! }
    }

    /// Requests can still be completed after a backend failure, never after close.
    @inline(__always)
    func ensureOpen() throws(MXError) {
        if hot.pointee.closed { throw MXError(.closedEndpoint, "endpoint \(endpointID) of board \(board) is closed") }
    }

    /// The rendezvous threshold this endpoint uses toward peers on this host.
    public var rendezvousThreshold: Int { options.rendezvousThreshold }

    // MARK: connect

    /// Resolves a peer endpoint to an address, presenting its key (MX `mx_connect`).
    public func connect(nicID: UInt64, endpointID: Int, key: UInt32, timeout: Duration = .seconds(10)) throws(MXError) -> MXEndpointAddress {
        let r = try iconnect(nicID: nicID, endpointID: endpointID, key: key)
        let status = try wait(r, timeout: timeout)
        return status.source!
    }

    /// Starts a connect; the request completes with the address as its status's `source`.
    public func iconnect(nicID: UInt64, endpointID: Int, key: UInt32) throws(MXError) -> MXRequest {
        try ensureUsable()
        guard endpointID >= 0 && endpointID < MXLimits.maxEndpointsPerBoard else {
            throw MXError(.invalidEndpoint, "endpoint id \(endpointID) is out of range 0...\(MXLimits.maxEndpointsPerBoard - 1)")
        }
        let token = try connection.request(.connect) { w in
            w.put(nicID); w.put(UInt16(endpointID)); w.put(key)
        }
        let r = core.pointee.allocateRequest(kind: .connect)
        pendingConnects[r] = token
        return core.pointee.handle(r)
    }

    func finishConnect(_ r: Int32, token: UInt32) {
        do throws(MXError) {
            guard let p = try applyConnectReply(token) else { return }
            pendingConnects[r] = nil
            core.pointee.requests[r].pointee.peer = p
            core.pointee.complete(r)
        } catch {
            pendingConnects[r] = nil
            core.pointee.fail(r, error)
        }
    }

    /// Attaches the peer a connect reply describes; nil while the reply has not arrived.
    func applyConnectReply(_ token: UInt32) throws(MXError) -> Int32? {
        guard var reply = try connection.takeReply(token) else { return nil }
        if reply.header.flags & ControlFlags.remotePeer != 0 {
            return try attachRemote(try RemotePeer(from: &reply.payload))
        }
        let grant = try PeerGrant(from: &reply.payload)
        if grant.alreadyAttached {
            reply.fds.forEach(closeDescriptor)
            attachQueuedPeers() // the attach event may still be queued
            guard let found = peerIndex[PeerKey(nic: grant.nicID, endpoint: grant.endpoint)] else {
                throw MXError(.protocolError, "backend says the peer is attached, but it is not known here")
            }
            return found
        }
        guard let fd = reply.fds.first else { throw MXError(.protocolError, "connect reply without an event channel") }
        return try attach(grant, eventFD: fd)
    }

    /// Maps a peer's grants and adds it to the data path.
    func attach(_ g: PeerGrant, eventFD: Int32) throws(MXError) -> Int32 {
        let key = PeerKey(nic: g.nicID, endpoint: g.endpoint)
        if let existing = livePeer(key, session: g.session) {
            closeDescriptor(eventFD)
            return existing
        }
        do { try ensurePeerRoom() } catch {
            closeDescriptor(eventFD)
            throw error
        }
        let isSelf = g.ringOut == g.ringIn
        let refs = isSelf ? [g.ringOut, g.peerProtected, g.peerUnprotected]
                          : [g.ringOut, g.ringIn, g.peerProtected, g.peerUnprotected]
        let maps: [(pointer: UnsafeMutableRawPointer, size: Int)]
        do { maps = try connection.mapGrants(refs) } catch {
            closeDescriptor(eventFD)
            throw error
        }
        let outMap = maps[0]
        let inMap = isSelf ? maps[0] : maps[1]
        let prot = maps[isSelf ? 1 : 2]
        let unprot = maps[isSelf ? 2 : 3]
        let outCells: Int, inCells: Int
        do {
            outCells = try ringCells(outMap.pointer, mappedBytes: outMap.size)
            inCells = try ringCells(inMap.pointer, mappedBytes: inMap.size)
        } catch {
            for m in maps { SharedMemory.unmap(m.pointer, size: m.size) }
            closeDescriptor(eventFD)
            throw error
        }
        let p = core.pointee.peerCount
        let out = RingProducer(base: outMap.pointer, cells: outCells)
        (core.pointee.peers + Int(p)).initialize(to: Peer(
            nicID: g.nicID, endpointID: g.endpoint, session: g.session, pid: g.pid, alive: true, isSelf: isSelf,
            out: out,
            inbound: RingConsumer(base: inMap.pointer, cells: inCells),
            peerProtected: UnsafeRawPointer(prot.pointer), peerUnprotected: UnsafeRawPointer(unprot.pointer),
            eventFD: eventFD, mappings: maps.map { ($0.pointer, $0.size) },
            eagerMax: min(core.pointee.threshold, out.maxPayload)))
        core.pointee.peerCount += 1
        peerIndex[key] = p
        return p
    }

    /// The address of the peer already attached to this endpoint (it connected here, or this
    /// endpoint to it) as endpoint `endpointID` of board `nicID` with `session`, without
    /// connecting: nil if there is none. The session is what the backend vouched for, so a
    /// caller that knows it from elsewhere cannot be given another endpoint. A peer that went
    /// away is still given: operations toward it then fail at once with why.
    public func attachedPeer(nicID: UInt64, endpointID: Int, session: UInt32) -> MXEndpointAddress? {
        guard !hot.pointee.closed, let ep = UInt16(exactly: endpointID),
              let p = peerIndex[PeerKey(nic: nicID, endpoint: ep)], core.pointee.peers[Int(p)].session == session else { return nil }
        return core.pointee.address(ofPeer: p)
    }

    /// The peer already attached under `key` in this session, if it is still there.
    func livePeer(_ key: PeerKey, session: UInt32) -> Int32? {
        guard let p = peerIndex[key], core.pointee.peers[Int(p)].session == session, core.pointee.peers[Int(p)].alive else { return nil }
        return p
    }

    func ensurePeerRoom() throws(MXError) {
        guard core.pointee.peerCount < core.pointee.peerCapacity else {
            throw MXError(.tooManyPeers, "endpoint \(endpointID) already has \(MXLimits.maxPeers) peers, the most an endpoint keeps over its life")
        }
    }

    /// Adds a peer of another host, reached through this endpoint's wire socket.
    func attachRemote(_ g: RemotePeer) throws(MXError) -> Int32 {
        let key = PeerKey(nic: g.nicID, endpoint: g.endpoint)
        if let existing = livePeer(key, session: g.session) { return existing }
        guard core.pointee.wire.fd >= 0 else {
            throw MXError(.protocolError, "the backend attached a peer of another host to an endpoint without a wire socket")
        }
        try ensurePeerRoom()
        let p = core.pointee.attachRemote(g)
        peerIndex[key] = p
        return p
    }

    // MARK: control events

    /// Handles what the backend pushed: peers attaching or going away, or its own death.
    func processEvents() {
        core.pointee.controlPending = false
        if !connection.pump() { backendLost(); return }
        attachQueuedPeers()
        // Replies come in request order: abandoned (cancelled) connects may attach a peer a
        // later connect names, so they are applied first.
        abandonedConnects.removeAll { token in
            do throws(MXError) { return try applyConnectReply(token) != nil } catch { return true }
        }
        for (r, token) in pendingConnects.sorted(by: { $0.value < $1.value }) { finishConnect(r, token: token) }
    }

    /// Applies the peer-attached and peer-detached events the backend has sent.
    func attachQueuedPeers() {
        let events = connection.pendingEvents
        connection.pendingEvents.removeAll()
        for var e in events {
            switch e.header.type {
            case .peerAttached:
                guard let g = try? PeerGrant(from: &e.payload), let fd = e.fds.first else {
                    e.fds.forEach(closeDescriptor)
                    continue
                }
                _ = try? attach(g, eventFD: fd)
            case .remotePeerAttached:
                e.fds.forEach(closeDescriptor)
                if let g = try? RemotePeer(from: &e.payload) { _ = try? attachRemote(g) }
            case .peerDetached:
                guard let nic = try? e.payload.get(UInt64.self), let ep = try? e.payload.get(UInt16.self),
                      let session = try? e.payload.get(UInt32.self) else { continue }
                let hostLost = e.header.flags & ControlFlags.hostLost != 0
                let reason = hostLost
                    ? "is on a host at \(NICAddressing.formatIPv4(NICAddressing.wireAddress(of: nic).ipv4)) that stopped answering: its backend was silent for the host timeout"
                    : EndpointCore.peerClosedReason
                for p in 0..<core.pointee.peerCount {
                    let peer = core.pointee.peers[Int(p)]
                    if peer.nicID == nic && peer.endpointID == ep && peer.session == session && peer.alive {
                        core.pointee.peerGone(p, reason: reason, hostLost: hostLost)
                    }
                }
            default:
                e.fds.forEach(closeDescriptor)
            }
        }
    }

    func backendLost() {
        guard !hot.pointee.failed else { return }
        let e = MXError(.backendDied, "the backend (myrback at \(connection.socketPath)) died; every request of endpoint \(endpointID) failed; open a new endpoint once a backend runs again")
        failure = e
        hot.pointee.failed = true
        core.pointee.failAll(e)
        for (r, _) in pendingConnects { core.pointee.fail(r, e) }
        pendingConnects.removeAll()
    }

    /// Polls the control socket without blocking (backend death shows here as a hang-up).
    func healthCheck(now: UInt64) {
        hot.pointee.lastHealthCheck = now
        var p = pollfd(fd: connection.socket.fd, events: Int16(POLLIN), revents: 0)
        if poll(&p, 1, 0) > 0 { processEvents() }
    }

    // MARK: progress and waiting

    /// Advances every pending operation once.
    @inline(__always)
    public func progress() throws(MXError) {
        try ensureUsable()
        progressOnce()
    }

    @inline(__always)
    func progressOnce() {
        // Connects in flight first: their replies attach peers whose frames may be waiting.
        if hot.pointee.controlWork { processEvents() }
        if core.pointee.progress() && core.pointee.controlPending { processEvents() }
        // Even a program that only ever tests learns of a dead backend within ~100 ms.
        hot.pointee.progressCalls &+= 1
        if hot.pointee.progressCalls & 0xFFF == 0 {
            let now = monotonicNanoseconds()
            if now - hot.pointee.lastHealthCheck > 100_000_000 { healthCheck(now: now) }
        }
    }

    /// Sleeps on the event channel until a peer or the backend rings it, or `deadline`; with
    /// `extra`, also until that descriptor is readable (then returns true).
    @discardableResult
    func sleep(until deadline: UInt64?, watching extra: Int32 = -1) -> Bool {
        let flag = core.pointee.unprotected + UnprotectedPage.sleepingOffset
        cmx_store_relaxed_u64(flag, 1)
        cmx_fence_seq_cst()
        if core.pointee.progress() {
            cmx_store_relaxed_u64(flag, 0)
            if core.pointee.controlPending { processEvents() }
            return false
        }
        var ms: Int32 = 1000
        if let d = deadline {
            let now = monotonicNanoseconds()
            ms = d <= now ? 0 : Int32(min(UInt64(1000), (d - now) / 1_000_000 + 1))
        }
        // Peers of other hosts: they hear our acks before we sleep, their frames wake us, and
        // we wake in time to resend what they have not acked.
        if core.pointee.wire.linkCount > 0 {
            core.pointee.flushWireAcks()
            if core.pointee.wireAwaitsAcks { ms = min(ms, Int32(MXWire.firstResendNanoseconds / 1_000_000)) }
        }
        // A descriptor of -1 is ignored by poll: the wire's and the extra one when absent.
        var fds = (pollfd(fd: connection.eventChannel.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: connection.socket.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: core.pointee.wire.fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: extra, events: Int16(POLLIN), revents: 0))
        _ = withUnsafeMutableBytes(of: &fds) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 4, ms) }
        cmx_store_relaxed_u64(flag, 0)
        if fds.0.revents != 0 {
            connection.eventChannel.drain()
            core.pointee.count(.wakeups)
        }
        if fds.1.revents != 0 { processEvents() }
        return extra >= 0 && fds.3.revents != 0
    }

    /// What a blocking call waits for. Generic, so the common wait on one request is
    /// specialized: no closure context, no retain of the endpoint per poll.
    typealias WaitCondition = MXWaitCondition

    struct RequestDone: WaitCondition {
        let request: Int32
        @inline(__always) func holds(_ endpoint: MXEndpoint) -> Bool { endpoint.isDone(request) }
    }

    struct AnyDone: WaitCondition {
        let requests: [Int32]
        func holds(_ endpoint: MXEndpoint) -> Bool { requests.contains(where: endpoint.isDone) }
    }

    struct SomeCompleted: WaitCondition {
        func holds(_ endpoint: MXEndpoint) -> Bool { endpoint.core.pointee.completedHead >= 0 }
    }

    struct WireDrained: WaitCondition {
        func holds(_ endpoint: MXEndpoint) -> Bool { !endpoint.core.pointee.wireAwaitsAcks }
    }

    struct UnexpectedMatch: WaitCondition {
        let matchInfo: UInt64
        let mask: UInt64
        let sender: MXSender
        let since: UInt32
        func holds(_ endpoint: MXEndpoint) -> Bool {
            endpoint.core.pointee.engine.peekUnexpected(matchInfo: matchInfo, mask: mask) != nil
                || endpoint.core.pointee.senderGone(sender, since: since) != nil
        }
    }

    /// Waits until `condition` holds: polls flat out briefly, then polls yielding the CPU
    /// between polls, then sleeps on the event channel, so idle waiters cost no CPU and
    /// oversubscribed hosts still progress.
    @inline(__always)
    func block<C: WaitCondition>(deadline: UInt64?, until condition: C) throws(MXError) {
        var iterations: UInt32 = 0
        var spinStart: UInt64 = 0
        let spinNs = UInt64(options.spinMicroseconds) * 1000
        let sleepNs = UInt64(max(options.sleepAfterMicroseconds, options.spinMicroseconds)) * 1000
        while true {
            progressOnce()
            if condition.holds(self) { return }
            iterations &+= 1
            if iterations & 0x3F == 0 {
                let now = monotonicNanoseconds()
                if spinStart == 0 { spinStart = now }
                if let d = deadline, now >= d { throw MXError(.timeout, "timed out") }
                if now - hot.pointee.lastHealthCheck > 100_000_000 {
                    healthCheck(now: now)
                    if condition.holds(self) { return }
                    if hot.pointee.failed { throw failure! }
                }
                let waited = now - spinStart
                if waited > sleepNs {
                    sleep(until: deadline)
                    spinStart = 0
                } else if waited > spinNs {
                    sched_yield()
                }
            }
        }
    }

    @inline(__always)
    func deadline(_ timeout: Duration?) -> UInt64? {
        guard let t = timeout else { return nil }
        let c = t.components
        let ns = c.seconds < 0 ? 0 : UInt64(c.seconds) * 1_000_000_000 + UInt64(max(0, c.attoseconds) / 1_000_000_000)
        return monotonicNanoseconds() &+ ns
    }

    @inline(__always)
    func isDone(_ r: Int32) -> Bool { core.pointee.requests[r].pointee.state == RequestState.done }

    /// Waits until `condition` holds, progressing the endpoint meanwhile and sleeping on its
    /// event channel when nothing happens for a while (see `block`). For a layer above with
    /// work of its own to advance while it waits (the MPI library's collective schedules do it
    /// in `holds`). On timeout throws `timeout`.
    public func wait<C: MXWaitCondition>(until condition: C, timeout: Duration? = nil) throws(MXError) {
        try ensureUsable()
        if condition.holds(self) { return }
        try block(deadline: deadline(timeout), until: condition)
    }

    /// Whether `request` is done, without progressing anything or completing it (cheap enough
    /// for a condition of `wait(until:)` to call on every round). False for a handle that is
    /// no longer valid.
    @inline(__always)
    public func isDone(_ request: MXRequest) -> Bool {
        guard !hot.pointee.closed, let r = try? core.pointee.validate(request) else { return false }
        return isDone(r)
    }

    /// Completes `request` if it is done: returns its status (and frees it), else nil.
    @inline(__always)
    public func test(_ request: MXRequest) throws(MXError) -> MXStatus? {
        try ensureOpen()
        let r = try core.pointee.validate(request)
        if !isDone(r) {
            try ensureUsable()
            progressOnce()
            if !isDone(r) { return nil }
        }
        return try core.pointee.finish(r)
    }

    /// Waits for `request` (forever, or up to `timeout`, then `MXError.timeout` and the request
    /// stays pending), returns its status and frees it.
    @inline(__always)
    public func wait(_ request: MXRequest, timeout: Duration? = nil) throws(MXError) -> MXStatus {
        try ensureOpen()
        let r = try core.pointee.validate(request)
        if !isDone(r) {
            try ensureUsable()
            do {
                try block(deadline: deadline(timeout), until: RequestDone(request: r))
            } catch where error.code == .timeout {
                throw MXError(.timeout, "request did not complete within \(timeout!)")
            }
        }
        return try core.pointee.finish(r)
    }

    /// Whether `request` is done (after one round of progress), without completing it.
    public func isComplete(_ request: MXRequest) throws(MXError) -> Bool {
        try ensureOpen()
        let r = try core.pointee.validate(request)
        if !isDone(r) { progressOnce() }
        return isDone(r)
    }

    /// Completes the first of `requests` that is done; nil when none is.
    public func testAny(_ requests: [MXRequest]) throws(MXError) -> (index: Int, status: MXStatus)? {
        try ensureOpen()
        var slots: [Int32] = []
        for q in requests { slots.append(try core.pointee.validate(q)) }
        progressOnce()
        for (i, r) in slots.enumerated() where isDone(r) { return (i, try core.pointee.finish(r)) }
        return nil
    }

    /// Waits until one of `requests` completes; returns which, with its status.
    public func waitAny(_ requests: [MXRequest], timeout: Duration? = nil) throws(MXError) -> (index: Int, status: MXStatus) {
        try ensureOpen()
        guard !requests.isEmpty else { throw MXError(.badParameter, "waitAny needs at least one request") }
        var slots: [Int32] = []
        for q in requests { slots.append(try core.pointee.validate(q)) }
        if slots.firstIndex(where: isDone) == nil {
            try ensureUsable()
            do {
                try block(deadline: deadline(timeout), until: AnyDone(requests: slots))
            } catch where error.code == .timeout {
                throw MXError(.timeout, "none of \(requests.count) requests completed within \(timeout!)")
            }
        }
        let found = slots.firstIndex(where: isDone)!
        return (found, try core.pointee.finish(slots[found]))
    }

    /// The oldest completed request not yet tested or waited for, without completing it.
    public func ipeek() throws(MXError) -> MXRequest? {
        try ensureUsable()
        progressOnce()
        let r = core.pointee.completedHead
        return r >= 0 ? core.pointee.handle(r) : nil
    }

    /// Waits for some request to complete and returns it, without completing it.
    public func peek(timeout: Duration? = nil) throws(MXError) -> MXRequest {
        try ensureUsable()
        try block(deadline: deadline(timeout), until: SomeCompleted())
        return core.pointee.handle(core.pointee.completedHead)
    }

    /// Looks for an unexpected message that matches, without receiving it.
    public func iprobe(matchInfo: UInt64, mask: UInt64 = .max) throws(MXError) -> MXStatus? {
        try ensureUsable()
        guard MatchEngine.isValid(matchInfo: matchInfo, mask: mask) else { throw badMask(matchInfo, mask) }
        progressOnce()
        guard let u = core.pointee.engine.peekUnexpected(matchInfo: matchInfo, mask: mask) else { return nil }
        let m = core.pointee.unexpected[u].pointee
        return MXStatus(kind: .receive, source: core.pointee.address(ofPeer: m.peer), matchInfo: m.matchInfo,
                        messageLength: m.length, transferredLength: m.length, context: 0, isCancelled: false)
    }

    /// Waits for a matching unexpected message and describes it, without receiving it. With a
    /// `sender`, fails with `peerClosed` once that sender cannot come any more (see `MXSender`).
    public func probe(matchInfo: UInt64, mask: UInt64 = .max, from sender: MXSender = .unknown,
                      timeout: Duration? = nil) throws(MXError) -> MXStatus {
        try ensureUsable()
        guard MatchEngine.isValid(matchInfo: matchInfo, mask: mask) else { throw badMask(matchInfo, mask) }
        let since = core.pointee.hostLosses
        let end = deadline(timeout)
        while true {
            do {
                try block(deadline: end, until: UnexpectedMatch(matchInfo: matchInfo, mask: mask, sender: sender, since: since))
            } catch where error.code == .timeout {
                throw MXError(.timeout, "no matching message arrived within \(timeout!)")
            }
            if let found = try iprobe(matchInfo: matchInfo, mask: mask) { return found }
            if let gone = core.pointee.senderGone(sender, since: since) { throw gone }
            // The message it saw went meanwhile (a rendezvous from a peer that just left): wait on.
        }
    }

    /// Cancels a receive that has not matched yet (true), or reports that it cannot (false:
    /// sends, matched receives and completed requests are not cancellable).
    public func cancel(_ request: MXRequest) throws(MXError) -> Bool {
        try ensureOpen()
        let r = try core.pointee.validate(request)
        let s = core.pointee.requests[r]
        if s.pointee.state != RequestState.pending { return false }
        if s.pointee.kind == MXStatus.Kind.connect.rawValue {
            // The backend still answers; the answer is applied (the peer attached) but
            // completes nothing.
            if let token = pendingConnects.removeValue(forKey: r) { abandonedConnects.append(token) }
            s.pointee.flags |= RequestFlag.cancelled
            core.pointee.complete(r)
            return true
        }
        guard s.pointee.kind == MXStatus.Kind.receive.rawValue, s.pointee.flags & RequestFlag.posted != 0 else { return false }
        guard core.pointee.engine.cancel(receive: r, ticket: s.pointee.ticket) else { return false }
        s.pointee.flags &= ~RequestFlag.posted
        s.pointee.flags |= RequestFlag.cancelled
        core.pointee.complete(r)
        return true
    }

    func badMask(_ info: UInt64, _ mask: UInt64) -> MXError {
        MXError(.badMatchMask, "match info 0x\(String(info, radix: 16)) has bits outside mask 0x\(String(mask, radix: 16)) (bits 0x\(String(info & ~mask, radix: 16)))")
    }

    // MARK: sends

    @inline(__always)
    func checkPeer(_ dest: MXEndpointAddress) throws(MXError) -> Int32 {
        let p = try checkAddress(dest)
        guard core.pointee.peers[Int(p)].alive else {
            throw core.pointee.departure(p, dest)
        }
        return p
    }

    /// The peer slot of an address this endpoint produced, alive or not.
    func checkAddress(_ dest: MXEndpointAddress) throws(MXError) -> Int32 {
        let p = dest.peerIndex
        guard p >= 0 && p < core.pointee.peerCount else {
            throw MXError(.badParameter, "\(dest) was not connected from this endpoint")
        }
        let peer = core.pointee.peers + Int(p)
        guard peer.pointee.nicID == dest.nicID && Int(peer.pointee.endpointID) == dest.endpointID
                && peer.pointee.session == dest.session else {
            throw MXError(.badParameter, "\(dest) was not connected from this endpoint")
        }
        return p
    }

    /// Sends `buffer` to `destination` with `matchInfo` (eager or rendezvous by size). The
    /// buffer must stay valid until the request completes.
    @inline(__always)
    public func isend(_ buffer: UnsafeRawBufferPointer, to destination: MXEndpointAddress, matchInfo: UInt64,
                      context: UInt64 = 0) throws(MXError) -> MXRequest {
        try send(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count, nil, to: destination,
                 matchInfo: matchInfo, context: context, sync: false)
    }

    /// A synchronous send: completes only once the receiver has matched it.
    public func issend(_ buffer: UnsafeRawBufferPointer, to destination: MXEndpointAddress, matchInfo: UInt64,
                       context: UInt64 = 0) throws(MXError) -> MXRequest {
        try send(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count, nil, to: destination,
                 matchInfo: matchInfo, context: context, sync: true)
    }

    /// Gathers up to 256 segments into one message.
    public func isend(segments: UnsafeBufferPointer<MXSegment>, to destination: MXEndpointAddress, matchInfo: UInt64,
                      context: UInt64 = 0) throws(MXError) -> MXRequest {
        try send(nil, 0, segments, to: destination, matchInfo: matchInfo, context: context, sync: false)
    }

    public func issend(segments: UnsafeBufferPointer<MXSegment>, to destination: MXEndpointAddress, matchInfo: UInt64,
                       context: UInt64 = 0) throws(MXError) -> MXRequest {
        try send(nil, 0, segments, to: destination, matchInfo: matchInfo, context: context, sync: true)
    }

    @inline(__always)
    func send(_ base: UnsafeMutableRawPointer?, _ length: Int, _ segments: UnsafeBufferPointer<MXSegment>?,
              to destination: MXEndpointAddress, matchInfo: UInt64, context: UInt64, sync: Bool) throws(MXError) -> MXRequest {
        try ensureUsable()
        let p = try checkPeer(destination)
        if let segs = segments {
            guard segs.count <= MXLimits.maxSegments else {
                throw MXError(.tooManySegments, "\(segs.count) segments; at most \(MXLimits.maxSegments) per operation")
            }
        }
        var total = length
        if let segs = segments {
            total = 0
            for seg in segs {
                guard seg.length >= 0, seg.base != nil || seg.length == 0 else {
                    throw MXError(.badParameter, "a segment of \(seg.length) bytes at \(String(describing: seg.base)) is not a buffer")
                }
                total += seg.length
            }
        }
        guard total >= 0 && total <= Int(UInt32.max) else {
            throw MXError(.badParameter, "message length \(total) is out of range (at most 4 GiB - 1)")
        }
        let r = core.pointee.allocateRequest(kind: .send)
        var s = core.pointee.requests[r]
        s.pointee.peer = p
        s.pointee.matchInfo = matchInfo
        s.pointee.context = context
        if let segs = segments {
            _ = core.pointee.attachSegments(r, segs)
        } else {
            s.pointee.buffer = base
            s.pointee.length = length
        }
        s.pointee.messageLength = total
        if total > core.pointee.peers[Int(p)].eagerMax {
            s.pointee.flags |= RequestFlag.rendezvous
            do {
                try prepareRendezvous(r)
            } catch {
                core.pointee.freeRequest(r)
                throw error
            }
            s = core.pointee.requests[r]
        } else if sync {
            s.pointee.flags |= RequestFlag.sync
        }
        core.pointee.submit(r)
        return core.pointee.handle(r)
    }

    /// Registers the send's buffer (through the registration cache) for the receiver's pull.
    func prepareRendezvous(_ r: Int32) throws(MXError) {
        let s = core.pointee.requests[r]
        if s.pointee.segments != nil {
            // Several segments: one contiguous copy is what gets registered and pulled.
            guard let packed = malloc(max(s.pointee.length, 1)) else { throw MXError(.system, "out of memory packing a send") }
            core.pointee.gather(s, into: packed)
            s.pointee.packed = packed
            s.pointee.segments!.deallocate()
            s.pointee.segments = nil
            s.pointee.buffer = packed
        }
        let base = UInt64(UInt(bitPattern: s.pointee.buffer))
        let length = UInt64(s.pointee.length)
        let (id, generation, regionBase) = try registerRegion(base: base, length: length)
        let slot = core.pointee.requests[r]
        slot.pointee.regionID = Int32(id)
        slot.pointee.regionGeneration = generation
        slot.pointee.regionOffset = base - regionBase
    }

    /// A pinned region covering the range: a cache hit, or a registration with the backend
    /// (evicting the least recently used unpinned region when all 256 are taken).
    func registerRegion(base: UInt64, length: UInt64) throws(MXError) -> (UInt32, UInt32, UInt64) {
        if let i = core.pointee.cache.lookup(base: base, length: length) {
            let e = core.pointee.cache.entries[i]
            return (e.regionID, e.generation, e.base)
        }
        if core.pointee.cache.isFull {
            guard let victim = core.pointee.cache.evictionCandidate() else {
                throw MXError(.regionTableFull, "all \(MXLimits.regionsPerEndpoint) regions are in use by unfinished sends; complete some before sending more large messages")
            }
            let id = core.pointee.cache.entries[victim].regionID
            _ = try connection.call(.deregister) { $0.put(id) }
            core.pointee.cache.remove(at: victim)
        }
        var reply = try connection.call(.register) { w in w.put(base); w.put(length) }
        let id = try reply.payload.get(UInt32.self)
        let generation = try reply.payload.get(UInt32.self)
        _ = core.pointee.cache.insert(base: base, length: length, regionID: id, generation: generation)
        return (id, generation, base)
    }

    /// Deregisters cached regions overlapping `buffer` (call before giving such memory back to
    /// the system if it was sent with large messages). Regions still in use stay.
    public func invalidateRegistrations(covering buffer: UnsafeRawBufferPointer) throws(MXError) {
        try ensureUsable()
        let base = UInt64(UInt(bitPattern: buffer.baseAddress))
        for i in core.pointee.cache.overlapping(base: base, length: UInt64(buffer.count)).reversed() {
            let id = core.pointee.cache.entries[i].regionID
            _ = try connection.call(.deregister) { $0.put(id) }
            core.pointee.cache.remove(at: i)
        }
    }

    /// Registration cache figures: (regions cached, hits, misses).
    public var registrationCacheStatistics: (regions: Int, hits: Int, misses: Int) {
        guard !hot.pointee.closed else { return (0, 0, 0) }
        return (core.pointee.cache.entries.count, core.pointee.cache.hits, core.pointee.cache.misses)
    }

    // MARK: receives

    /// Posts a receive for a message whose match info fits `(incoming & mask) == matchInfo`.
    /// A longer message is truncated to the buffer (reported in the status, never overrun).
    @inline(__always)
    public func irecv(_ buffer: UnsafeMutableRawBufferPointer, matchInfo: UInt64, mask: UInt64 = .max,
                      from sender: MXSender = .unknown, context: UInt64 = 0) throws(MXError) -> MXRequest {
        try ensureUsable()
        guard MatchEngine.isValid(matchInfo: matchInfo, mask: mask) else { throw badMask(matchInfo, mask) }
        if case let .peer(a) = sender { _ = try checkAddress(a) }
        let r = core.pointee.postReceive(buffer.baseAddress, length: buffer.count, matchInfo: matchInfo, mask: mask,
                                         context: context, sender: sender)
        return core.pointee.handle(r)
    }

    /// Receives into up to 256 segments (scatter).
    public func irecv(segments: UnsafeBufferPointer<MXSegment>, matchInfo: UInt64, mask: UInt64 = .max,
                      from sender: MXSender = .unknown, context: UInt64 = 0) throws(MXError) -> MXRequest {
        try ensureUsable()
        guard segments.count <= MXLimits.maxSegments else {
            throw MXError(.tooManySegments, "\(segments.count) segments; at most \(MXLimits.maxSegments) per operation")
        }
        for seg in segments where seg.length < 0 || (seg.base == nil && seg.length > 0) {
            throw MXError(.badParameter, "a segment of \(seg.length) bytes at \(String(describing: seg.base)) is not a buffer")
        }
        guard MatchEngine.isValid(matchInfo: matchInfo, mask: mask) else { throw badMask(matchInfo, mask) }
        if case let .peer(a) = sender { _ = try checkAddress(a) }
        let r = core.pointee.allocateRequest(kind: .receive)
        _ = core.pointee.attachSegments(r, segments)
        let s = core.pointee.requests[r]
        s.pointee.matchInfo = matchInfo
        s.pointee.mask = mask
        s.pointee.context = context
        core.pointee.post(r, sender: sender)
        return core.pointee.handle(r)
    }

    // MARK: shared segments

    /// Memory shared with other endpoints of this host (a layer above builds its own
    /// protocols in it: the MPI library's intra-host collectives). Every endpoint that asks
    /// with the same `key` gets the same `size` bytes, zeroed when the first asked; the key
    /// is the only admission, so make it random and tell it only to those meant to share.
    /// The mapping lasts until the endpoint closes or leaves it (`leaveSegment`); the memory,
    /// until the last sharer is gone. Not from inside a wait: it asks the backend and waits
    /// for the answer. Asking again with a key already shared gives the same mapping.
    public func shareSegment(key: UInt64, size: Int) throws(MXError) -> UnsafeMutableRawPointer {
        try ensureUsable()
        guard size > 0 && size <= MXLimits.maxSharedSegmentBytes else {
            throw MXError(.badParameter, "a shared segment of \(size) bytes; 1 to \(MXLimits.maxSharedSegmentBytes) bytes are allowed")
        }
        if let m = sharedMappings.first(where: { $0.key == key }) {
            guard m.size == size else {
                throw MXError(.badParameter, "the shared segment of this key has \(m.size) bytes, not \(size)")
            }
            return m.pointer
        }
        var reply = try connection.call(.shareSegment) { w in w.put(key); w.put(UInt64(size)) }
        let ref = GrantRef(try reply.payload.get(UInt32.self))
        let mapped = try connection.mapGrants([ref])
        sharedMappings.append((key, mapped[0].pointer, mapped[0].size))
        return mapped[0].pointer
    }

    /// Gives back the segment of `key`: unmaps it here (its memory must not be touched
    /// again) and leaves it at the backend, which frees it once its last sharer left, and
    /// which counts it no more among this endpoint's segments.
    public func leaveSegment(key: UInt64) throws(MXError) {
        try ensureUsable()
        guard let i = sharedMappings.firstIndex(where: { $0.key == key }) else {
            throw MXError(.badParameter, "this endpoint shares no segment of that key")
        }
        let m = sharedMappings.remove(at: i)
        SharedMemory.unmap(m.pointer, size: m.size)
        _ = try connection.call(.leaveSegment) { w in w.put(key) }
    }

    /// Counters of this endpoint (also shown by `mx_info`).
    public func counter(_ c: MXCounter) -> UInt64 {
        guard !hot.pointee.closed else { return 0 }
        return cmx_load_relaxed_u64(core.pointee.unprotected + c.offset)
    }

    /// Messages waiting in the unexpected queue.
    public var unexpectedCount: Int { hot.pointee.closed ? 0 : core.pointee.engine.unexpectedCount }
}
