#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// myrback: the driver domain of one host. It owns the emulated board(s) (endpoint table,
/// grant table, registration tables), answers frontends over a Unix-domain socket, and sets
/// up the direct data path between endpoints, which it then stays out of.
///
/// Single-threaded: one poll loop over the listening socket and every frontend connection.
public final class Backend {
    public struct Configuration: Sendable {
        public var socketPath: String
        public var hostname: String
        public var boards: Int = 1
        public var endpointsPerBoard: Int = MXLimits.endpointsPerBoard
        public var ringDataBytes: Int = RingLayout.defaultDataBytes
        /// Exit after this many seconds without any frontend (nil: run until signalled).
        public var idleExitSeconds: Int?
        public var verbose = false
        /// The host's address on the wire to other hosts (nil: this host only). With a wire,
        /// boards are named after it (`NICAddressing.nicID(ipv4:board:)`).
        public var wire: UInt32?
        /// Seconds another host may stay silent before its pairs with this one end.
        public var hostTimeoutSeconds = MXWire.defaultHostTimeoutSeconds
        /// The wire's MTU, where smaller than its interface's (nil: the interface's).
        public var wireMTU: Int?
        /// Control connections served at once (at most `MXLimits.maxConnectionsPerProcess` of one
        /// process); more are refused with `tooManyConnections`.
        public var maxConnections = MXLimits.maxConnections
        /// Remove the socket's directory at exit, if empty then, though this backend did not
        /// create it: a launcher's private job directory (it created the directory for its
        /// backends, and may be gone by then).
        public var removeEmptyDirectory = false
        /// A socket already bound to `socketPath` and listening, made by a launcher so that its
        /// ranks may connect while this backend still starts (socket activation); -1: bind here.
        public var inheritedListener: Int32 = -1

        public init(socketPath: String, hostname: String) {
            self.socketPath = socketPath
            self.hostname = hostname
        }
    }

    final class Connection {
        unowned let backend: Backend
        let id: UInt32
        let socket: ControlSocket
        let pid: Int32
        var handshake = XenbusHandshake(role: .backend)
        var eventChannel: EventChannel?
        var endpoint: EndpointRecord?
        /// Messages the frontend's socket had no room for yet (descriptors duplicated).
        var outbox: [(bytes: [UInt8], fds: [Int32])] = []
        /// Set when the frontend stopped reading or its socket failed: dropped after this turn.
        private(set) var broken = false
        /// A frontend this far behind on its control socket is not reading it at all.
        static let maxOutbox = 4096

        init(backend: Backend, id: UInt32, socket: ControlSocket, pid: Int32) {
            self.backend = backend
            self.id = id
            self.socket = socket
            self.pid = pid
        }

        /// Marks the connection for dropping at the end of this turn (once).
        func markBroken() {
            guard !broken else { return }
            broken = true
            backend.brokenConnections.append(self)
        }

        /// Sends without ever blocking the backend: what does not fit now waits in the outbox.
        func post(_ bytes: [UInt8], fds: [Int32] = []) {
            guard !broken else { return }
            do {
                if outbox.isEmpty, try socket.send(bytes, fds: fds, wait: false) { return }
            } catch {
                markBroken()
                return
            }
            guard outbox.count < Connection.maxOutbox else {
                markBroken()
                return
            }
            if outbox.isEmpty { backend.watch(self, writable: true) }
            outbox.append((bytes, fds.map { dup($0) }))
        }

        func flush() {
            while let first = outbox.first {
                do {
                    guard try socket.send(first.bytes, fds: first.fds, wait: false) else { return }
                } catch {
                    markBroken()
                    return
                }
                first.fds.forEach(closeDescriptor)
                outbox.removeFirst()
            }
            backend.watch(self, writable: false)
        }

        func discardOutbox() {
            for m in outbox { m.fds.forEach(closeDescriptor) }
            outbox.removeAll()
        }
    }

    final class EndpointRecord {
        let serial: UInt64
        let board: Int
        let index: Int
        let key: UInt32
        let session: UInt32
        unowned let owner: Connection
        let protectedFD: Int32
        let protectedPage: UnsafeMutableRawPointer
        let unprotectedFD: Int32
        let unprotectedPage: UnsafeMutableRawPointer
        var regionUsed = [Bool](repeating: false, count: MXLimits.regionsPerEndpoint)
        var peers: Set<UInt64> = []
        /// Its wire socket's port (0 without a wire) and receive buffer, and its peers on other
        /// hosts.
        var wirePort: UInt16 = 0
        var wireBuffer: UInt32 = 0
        var remotePeers: Set<RemoteKey> = []

        init(serial: UInt64, board: Int, index: Int, key: UInt32, session: UInt32, owner: Connection,
             protectedFD: Int32, protectedPage: UnsafeMutableRawPointer, unprotectedFD: Int32,
             unprotectedPage: UnsafeMutableRawPointer) {
            self.serial = serial; self.board = board; self.index = index; self.key = key
            self.session = session; self.owner = owner; self.protectedFD = protectedFD
            self.protectedPage = protectedPage; self.unprotectedFD = unprotectedFD
            self.unprotectedPage = unprotectedPage
        }

        var regions: RegionTable { RegionTable(protectedPage: protectedPage) }
        var eventChannel: EventChannel? { owner.eventChannel }

        func bumpAttachGeneration() {
            _ = cmx_fetch_add_u64(protectedPage + ProtectedPage.attachGenerationOffset, 1)
            eventChannel?.notify()
        }
    }

    /// The grants one side of a pair holds (kept so a repeated connect can answer again).
    struct PairSide {
        var grant: PeerGrant
    }

    struct PairKey: Hashable {
        let a: UInt64
        let b: UInt64
        init(_ x: UInt64, _ y: UInt64) { a = min(x, y); b = max(x, y) }
    }

    public let config: Configuration
    var listenFD: Int32 = -1
    var lockFD: Int32 = -1
    /// Whether this backend created its socket's directory (only then does it remove it).
    var createdDirectory = false
    /// Whether this backend held the socket's lock (served it): only then may it remove things.
    var lockWasHeld = false
    var connections: [Int32: Connection] = [:]
    /// Connections each frontend process holds (by its pid at connect, SO_PEERCRED).
    var connectionsByPID: [Int32: Int] = [:]
    /// Connections marked broken this turn, dropped at its end.
    var brokenConnections: [Connection] = []
    /// The event loop: one epoll set of the listener, the wire and every connection, and the
    /// buffers a turn's ready descriptors are read into (allocated once).
    var epollFD: Int32 = -1
    var readyFDs = [Int32](repeating: -1, count: 256)
    var readyFlags = [Int32](repeating: 0, count: 256)
    /// A descriptor held in reserve: out of descriptors, the backend closes it to accept and
    /// refuse a waiting frontend instead of leaving it in the backlog (where the listener
    /// would stay ready and the loop spin). A frontend is admitted only while it is held.
    var spareFD: Int32 = -1
    /// Until when the listener is out of the epoll set (accept failed for want of memory, or
    /// no spare descriptor could be had).
    var listenerPausedUntil: UInt64 = 0
    var boards: [[EndpointRecord?]]
    var endpointsBySerial: [UInt64: EndpointRecord] = [:]
    var pairs: [PairKey: [UInt64: PairSide]] = [:]
    var grants = GrantTable()
    /// Memory endpoints of this host share by a key they agreed on (`shareSegment`): the
    /// object and the endpoints taking part; it goes when the last of them closes.
    struct SharedSegment {
        let fd: Int32
        let size: Int
        var members: Set<UInt64>
    }
    var segments: [UInt64: SharedSegment] = [:]
    var nextConnectionID: UInt32 = 1
    var nextSerial: UInt64 = 1
    var refusedConnects = 0
    var sessionSeed: UInt32
    var stopRequested = false
    let myUID = getuid()
    public let nicIDs: [UInt64]
    var wireFD: Int32 = -1
    var wireNetmask: UInt32 = 0
    /// The largest frame this host's link takes (`MXWire.frameLimit`), told to its endpoints
    /// and to the hosts they pair with.
    var wireFrameLimit: UInt32 = 0
    var remoteConnects: [UInt32: RemoteConnect] = [:]
    var nextRemoteConnect: UInt32 = 1
    /// Hosts this one has pairs with: when each was last heard from, and last told we live.
    var remoteHosts: [UInt32: (heard: UInt64, told: UInt64)] = [:]
    var lastHostCheck: UInt64 = 0
    /// endpointClosed notices not receipted yet: the message, where to, since when.
    var closeNotices: [[UInt8]: (ip: UInt32, first: UInt64, last: UInt64)] = [:]

    public init(_ config: Configuration) throws(MXError) {
        guard config.boards >= 1 && config.boards <= MXLimits.maxBoards else {
            throw MXError(.badParameter, "--boards must be 1...\(MXLimits.maxBoards), not \(config.boards)")
        }
        guard config.endpointsPerBoard >= 1 && config.endpointsPerBoard <= MXLimits.maxEndpointsPerBoard else {
            throw MXError(.badParameter, "--endpoints must be 1...\(MXLimits.maxEndpointsPerBoard), not \(config.endpointsPerBoard)")
        }
        guard config.hostTimeoutSeconds >= 1 && config.hostTimeoutSeconds <= 86_400 else {
            throw MXError(.badParameter, "the host timeout must be 1 to 86400 seconds, not \(config.hostTimeoutSeconds)")
        }
        guard config.ringDataBytes >= RingLayout.minDataBytes, config.ringDataBytes <= RingLayout.maxDataBytes,
              config.ringDataBytes & (config.ringDataBytes - 1) == 0 else {
            throw MXError(.badParameter, "ring size must be a power of two between \(RingLayout.minDataBytes / 1024) and \(RingLayout.maxDataBytes / 1024) KiB, not \(config.ringDataBytes) bytes")
        }
        self.config = config
        boards = Array(repeating: Array(repeating: nil, count: config.endpointsPerBoard), count: config.boards)
        sessionSeed = UInt32(truncatingIfNeeded: monotonicNanoseconds() ^ UInt64(getpid()) << 16)
        nicIDs = (0..<config.boards).map { b in
            config.wire.map { NICAddressing.nicID(ipv4: $0, board: b) } ?? NICAddressing.nicID(hostname: config.hostname, board: b)
        }
        if let ip = config.wire { try openWire(ip) }
        do {
            try listen()
            try setUpEventLoop()
        } catch {
            shutdown() // the wire, and the lock and directory if this backend made them
            throw error
        }
    }

    deinit { shutdown() }


    // MARK: socket

    func listen() throws(MXError) {
        let path = config.socketPath
        let dir = BackendLocation.directory(of: path)
        createdDirectory = try BackendLocation.preparePrivateDirectory(dir)
        // One backend per socket: an exclusive lock on a file beside it.
        lockFD = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockFD >= 0 else { throw systemError("open(\(path).lock)") }
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            closeDescriptor(lockFD)
            lockFD = -1
            throw MXError(.badParameter, "another myrback already serves \(path)")
        }
        lockWasHeld = true
        if config.inheritedListener >= 0 {
            let fd = config.inheritedListener
            guard cmx_is_seqpacket_listener(fd) != 0 else {
                throw MXError(.badParameter, "descriptor \(fd) is not a listening Unix seqpacket socket; start myrback without --listen-fd, or pass the socket the launcher bound at \(path)")
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            listenFD = fd
            cmx_raise_fd_limit()
            return
        }
        // What stands at the path is removed only if it is a socket (one a dead backend left).
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw MXError(.badParameter, "\(path) exists and is not a socket; the backend does not remove it: choose another socket path \(BackendLocation.socketOption)")
            }
            unlink(path)
        }
        listenFD = try BackendLocation.listen(at: path)
        cmx_raise_fd_limit() // two ring objects per connected pair
    }

    func setUpEventLoop() throws(MXError) {
        epollFD = try check("epoll_create1") { cmx_epoll_create() }
        try check("fcntl(O_NONBLOCK)") { cmx_set_nonblocking(listenFD) }
        try check("epoll_ctl(listener)") { cmx_epoll_watch(epollFD, listenFD, CMX_WATCH_ADD, 0) }
        if wireFD >= 0 { try check("epoll_ctl(wire)") { cmx_epoll_watch(epollFD, wireFD, CMX_WATCH_ADD, 0) } }
        spareFD = openSpareDescriptor()
        guard spareFD >= 0 else { throw systemError("fcntl(F_DUPFD_CLOEXEC: a spare descriptor)") }
    }

    /// A duplicate of the epoll descriptor: it needs no new open file, only a slot in the
    /// descriptor table, so reopening it in the slot just freed cannot fail for want of memory.
    func openSpareDescriptor() -> Int32 { fcntl(epollFD, F_DUPFD_CLOEXEC, 0) }

    /// Watches `conn`'s socket for room to write too (while its outbox holds messages), or not.
    func watch(_ conn: Connection, writable: Bool) {
        guard conn.socket.fd >= 0 else { return }
        if cmx_epoll_watch(epollFD, conn.socket.fd, CMX_WATCH_MODIFY, writable ? 1 : 0) != 0 { conn.markBroken() }
    }

    /// Stops the loop at its next turn (safe from a signal handler's flag check).
    public func requestStop() { stopRequested = true }

    func shutdown() {
        for conn in Array(connections.values) { drop(conn) }
        closeDescriptor(clearing: &epollFD)
        closeDescriptor(clearing: &spareFD)
        closeDescriptor(clearing: &wireFD)
        if listenFD >= 0 {
            closeDescriptor(clearing: &listenFD)
            unlink(config.socketPath)
        }
        if lockFD >= 0 {
            unlink(config.socketPath + ".lock")
            closeDescriptor(lockFD)
            lockFD = -1
        }
        // The socket's directory goes too if this backend made it (or was asked to) and nothing
        // else is in it.
        if createdDirectory || (config.removeEmptyDirectory && lockWasHeld) {
            rmdir(BackendLocation.directory(of: config.socketPath))
        }
        createdDirectory = false
        lockWasHeld = false
    }

    func log(_ s: @autoclosure () -> String) {
        if config.verbose { print("myrback: \(s())") }
    }

    // MARK: loop

    /// Serves until stopped, idle for `idleExitSeconds`, or `shouldStop` says so.
    public func run(shouldStop: () -> Bool = { false }) {
        var idleSince = monotonicNanoseconds()
        while !stopRequested && !shouldStop() {
            if listenerPausedUntil != 0 && monotonicNanoseconds() >= listenerPausedUntil { resumeListener() }
            let busy = !remoteConnects.isEmpty || !remoteHosts.isEmpty || !closeNotices.isEmpty || listenerPausedUntil != 0
            let n = readyFDs.withUnsafeMutableBufferPointer { fds in
                readyFlags.withUnsafeMutableBufferPointer { flags in
                    cmx_epoll_wait(epollFD, fds.baseAddress, flags.baseAddress, Int32(fds.count), busy ? 50 : 200)
                }
            }
            if n < 0 && errno != EINTR { break }
            for i in 0..<max(0, Int(n)) {
                let fd = readyFDs[i]
                if fd == listenFD {
                    acceptWaiting()
                } else if fd == wireFD {
                    serveWire()
                } else if let c = connections[fd], !c.broken {
                    if readyFlags[i] & CMX_READY_OUT != 0 { c.flush() }
                    if readyFlags[i] & CMX_READY_IN != 0 { serve(c) }
                }
            }
            if !remoteConnects.isEmpty { resendRemoteConnects() }
            if !remoteHosts.isEmpty || !closeNotices.isEmpty { checkRemoteHosts() }
            while let c = brokenConnections.popLast() {
                guard connections[c.socket.fd] === c else { continue } // dropped already
                log("frontend \(c.id) stopped reading its control socket or lost it; dropping it")
                drop(c)
            }
            if connections.isEmpty {
                if let idle = config.idleExitSeconds,
                   monotonicNanoseconds() - idleSince > UInt64(idle) * 1_000_000_000 {
                    log("idle for \(idle) s, exiting")
                    break
                }
            } else {
                idleSince = monotonicNanoseconds()
            }
        }
        shutdown()
    }

    /// Frontends accepted per turn at most: a flood of connects waits its turn with the others.
    static let acceptsPerTurn = 64

    /// Accepts what waits on the listener (non-blocking, a bounded batch). Whatever makes
    /// accept fail while frontends wait leaves the level-triggered listener ready: every such
    /// case refuses the frontend or pauses the listener, so the loop never spins on it.
    func acceptWaiting() {
        for _ in 0..<Self.acceptsPerTurn {
            let fd = cmx_accept(listenFD)
            if fd >= 0 {
                guard holdsSpareDescriptor() else {
                    // The new connection took the last descriptor: refuse it, which frees its
                    // slot for the spare (a frontend is never left waiting for want of one).
                    refuse(ControlSocket(adopting: fd), outOfDescriptors())
                    guard holdsSpareDescriptor() else { return pauseListener("no spare file descriptor") }
                    continue
                }
                admit(fd)
                continue
            }
            let err = errno
            switch err {
            case EINTR, ECONNABORTED:
                continue
            case EAGAIN, EWOULDBLOCK:
                return // none left
            case EMFILE, ENFILE:
                guard refuseForWantOfDescriptors() else { return }
            default:
                // ENOMEM, ENOBUFS: the frontend stays in the backlog and the listener ready.
                return pauseListener("accept: \(String(cString: strerror(err)))")
            }
        }
    }

    /// Whether the spare descriptor is held, reopening it if need be.
    func holdsSpareDescriptor() -> Bool {
        if spareFD < 0 { spareFD = openSpareDescriptor() }
        return spareFD >= 0
    }

    func outOfDescriptors() -> MXError {
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        return MXError(.tooManyConnections, "the backend at \(config.socketPath) is out of file descriptors (its limit is \(limit.rlim_cur)) with \(connections.count) connections; close contexts or endpoints no longer used, or raise its limit (ulimit -n) where it starts")
    }

    /// Out of descriptors: the spare one makes room to accept a waiting frontend and tell it
    /// why it is refused. Returns whether one was (false: none waits, or the listener had to be
    /// paused instead).
    func refuseForWantOfDescriptors() -> Bool {
        guard spareFD >= 0 else {
            pauseListener("out of file descriptors, no spare one")
            return false
        }
        closeDescriptor(spareFD)
        spareFD = -1
        let fd = cmx_accept(listenFD)
        let err = errno
        if fd >= 0 { refuse(ControlSocket(adopting: fd), outOfDescriptors()) }
        guard holdsSpareDescriptor() else {
            pauseListener("no spare file descriptor")
            return false
        }
        if fd >= 0 { return true }
        switch err {
        case EAGAIN, EWOULDBLOCK: return false // accept reports EMFILE whether or not anyone waits: with room, it says which
        case EINTR, ECONNABORTED: return true
        default:
            pauseListener("accept: \(String(cString: strerror(err)))")
            return false
        }
    }

    /// Stops looking at the listener for 100 ms rather than spin on it while accept cannot
    /// succeed; waiting frontends stay in the backlog until it is looked at again.
    func pauseListener(_ reason: String) {
        log("\(reason): not accepting for 100 ms")
        _ = cmx_epoll_watch(epollFD, listenFD, CMX_WATCH_REMOVE, 0)
        listenerPausedUntil = monotonicNanoseconds() + 100_000_000
    }

    func resumeListener() {
        listenerPausedUntil = 0
        _ = holdsSpareDescriptor()
        _ = cmx_epoll_watch(epollFD, listenFD, CMX_WATCH_ADD, 0)
    }

    /// Sends a frontend of this user the reason it is refused, and closes its connection. Another
    /// user's gets not a word.
    func refuse(_ socket: ControlSocket, _ error: MXError) {
        if let cred = try? socket.peerCredentials(), cred.uid == myUID {
            log("frontend of pid \(cred.pid) refused: \(error.message)")
            _ = try? socket.send(ControlMessage.encodeError(error, token: 0), fds: [], wait: false)
        }
        socket.close()
    }

    /// A new frontend connection: of this user only, within the caps per process and in all.
    func admit(_ fd: Int32) {
        let socket = ControlSocket(adopting: fd)
        guard let cred = try? socket.peerCredentials(), cred.uid == myUID else {
            // Another user: no endpoint, no grant, not a word.
            socket.close()
            return
        }
        let held = connectionsByPID[cred.pid, default: 0]
        if connections.count >= config.maxConnections {
            return refuse(socket, MXError(.tooManyConnections, "the backend at \(config.socketPath) already serves \(connections.count) connections, its limit in all (--max-connections \(config.maxConnections)); close contexts or endpoints no longer used, or start the backend with a higher limit"))
        }
        if held >= MXLimits.maxConnectionsPerProcess {
            return refuse(socket, MXError(.tooManyConnections, "process \(cred.pid) already holds \(held) connections to the backend at \(config.socketPath), the limit for one process (\(MXLimits.maxConnectionsPerProcess): one per context and per endpoint); close contexts or endpoints it no longer uses"))
        }
        guard cmx_epoll_watch(epollFD, fd, CMX_WATCH_ADD, 0) == 0 else {
            return refuse(socket, systemError("epoll_ctl(a new frontend)"))
        }
        let conn = Connection(backend: self, id: nextConnectionID, socket: socket, pid: cred.pid)
        nextConnectionID &+= 1
        connections[fd] = conn
        connectionsByPID[cred.pid] = held + 1
        log("frontend \(conn.id) (pid \(cred.pid)) connected")
    }

    func serve(_ conn: Connection) {
        // Drain what is queued, so a burst of requests is handled in one turn.
        while true {
            let received: ControlSocket.Received
            do { received = try conn.socket.receive(wait: false) } catch {
                drop(conn)
                return
            }
            switch received {
            case .wouldBlock:
                return
            case .closed:
                drop(conn)
                return
            case let .message(bytes, fds):
                fds.forEach(closeDescriptor) // frontends never send descriptors
                do {
                    let msg = try ControlMessage.decode(bytes, fds: [])
                    try handle(msg, from: conn)
                } catch {
                    // A frontend that breaks the protocol loses its connection.
                    log("frontend \(conn.id): \(error)")
                    drop(conn)
                    return
                }
                if conn.broken {
                    drop(conn)
                    return
                }
            }
            if connections[conn.socket.fd] == nil { return }
        }
    }

    /// A frontend went away (closed, crashed or misbehaved): reclaim everything it had.
    func drop(_ conn: Connection) {
        guard connections[conn.socket.fd] === conn else { return }
        conn.discardOutbox()
        if let ep = conn.endpoint { teardown(ep) }
        grants.revoke(grantee: conn.id)
        if let ev = conn.eventChannel { closeDescriptor(ev.fd) }
        conn.eventChannel = nil
        connections[conn.socket.fd] = nil
        if let held = connectionsByPID[conn.pid], held > 1 { connectionsByPID[conn.pid] = held - 1 } else { connectionsByPID[conn.pid] = nil }
        _ = cmx_epoll_watch(epollFD, conn.socket.fd, CMX_WATCH_REMOVE, 0)
        conn.socket.close()
        log("frontend \(conn.id) gone")
    }

    // MARK: requests

    func reply(_ conn: Connection, _ token: UInt32, fds: [Int32] = [], _ body: (inout ByteWriter) -> Void = { _ in }) {
        conn.post(ControlMessage.encode(.reply, token: token, body), fds: fds)
    }

    func handle(_ msg: ControlMessage, from conn: Connection) throws(MXError) {
        var r = msg.payload
        let token = msg.header.token
        switch msg.header.type {
        case .frontendState:
            guard let state = XenbusState(rawValue: try r.get(UInt8.self)) else {
                throw MXError(.protocolError, "unknown xenbus state")
            }
            try conn.handshake.observe(peer: state)
            switch state {
            case .initialising:
                try conn.handshake.advance(to: .initWait)
                let ev = try EventChannel.allocate()
                conn.eventChannel = ev
                conn.post(ControlMessage.encode(.backendState, token: token) { $0.put(XenbusState.initWait.rawValue) }, fds: [ev.fd])
            case .initialised:
                try conn.handshake.advance(to: .connected)
                conn.post(ControlMessage.encode(.backendState, token: token) { $0.put(XenbusState.connected.rawValue) })
            case .closing:
                if let ep = conn.endpoint { teardown(ep) }
                try? conn.handshake.advance(to: .closing)
                try? conn.handshake.advance(to: .closed)
                conn.post(ControlMessage.encode(.backendState, token: token) { $0.put(XenbusState.closed.rawValue) })
            default:
                break
            }
            return
        default:
            break
        }
        guard conn.handshake.isConnected else {
            conn.post(ControlMessage.encodeError(MXError(.protocolError, "request before the handshake reached Connected"), token: token))
            return
        }
        do {
            try dispatch(msg.header.type, &r, token: token, conn: conn)
        } catch {
            // Whatever failed (a bad request, a full table, the system), the frontend hears why.
            conn.post(ControlMessage.encodeError(error, token: token))
        }
    }

    func dispatch(_ type: ControlType, _ r: inout ByteReader, token: UInt32, conn: Connection) throws(MXError) {
        switch type {
        case .boardInfo:
            let infos = boardInfos()
            reply(conn, token) { w in
                w.put(config.hostname)
                w.put(UInt32(infos.count))
                for b in infos { b.encode(to: &w) }
            }
        case .openEndpoint:
            let board = Int(try r.get(Int32.self))
            let index = Int(try r.get(Int32.self))
            let key = try r.get(UInt32.self)
            let (opened, wireSocket) = try openEndpoint(board: board, index: index, key: key, conn: conn)
            reply(conn, token, fds: wireSocket >= 0 ? [wireSocket] : []) { opened.encode(to: &$0) }
            if wireSocket >= 0 { closeDescriptor(wireSocket) }
        case .closeEndpoint:
            if let ep = conn.endpoint { teardown(ep) }
            reply(conn, token)
        case .mapGrants:
            let n = Int(try r.get(UInt16.self))
            guard n <= ControlSocket.maxDescriptors else {
                throw MXError(.badParameter, "at most \(ControlSocket.maxDescriptors) grants per map request, not \(n)")
            }
            var mapped: [(GrantTable.Grant, Int32)] = []
            defer { for (g, fd) in mapped where fd != g.fd { closeDescriptor(fd) } }
            for _ in 0..<n {
                let ref = GrantRef(try r.get(UInt32.self))
                switch grants.map(ref, by: conn.id) {
                case let .failure(e): throw e
                case let .success(g):
                    let fd = g.writable ? g.fd : cmx_reopen_readonly(g.fd)
                    guard fd >= 0 else { throw systemError("reopen read-only") }
                    mapped.append((g, fd))
                }
            }
            reply(conn, token, fds: mapped.map(\.1)) { w in
                w.put(UInt16(mapped.count))
                for (g, _) in mapped { w.put(UInt64(g.size)); w.put(g.writable) }
            }
        case .connect:
            let nicID = try r.get(UInt64.self)
            let endpoint = Int(try r.get(UInt16.self))
            let key = try r.get(UInt32.self)
            // Another host's NIC: the reply comes when that host's backend has answered.
            guard let (grant, fd) = try connect(conn: conn, token: token, nicID: nicID, endpoint: endpoint, key: key) else { return }
            reply(conn, token, fds: [fd]) { grant.encode(to: &$0) }
        case .register:
            guard let ep = conn.endpoint else { throw MXError(.closedEndpoint, "register needs an open endpoint") }
            let base = try r.get(UInt64.self)
            let length = try r.get(UInt64.self)
            guard let id = ep.regionUsed.firstIndex(of: false) else {
                throw MXError(.regionTableFull, "all \(MXLimits.regionsPerEndpoint) regions of endpoint \(ep.index) are registered; deregister one or let sends complete")
            }
            guard length > 0, base &+ length >= base else {
                throw MXError(.badParameter, "cannot register \(length) bytes at 0x\(String(base, radix: 16))")
            }
            ep.regionUsed[id] = true
            let generation = ep.regions.install(id: id, base: base, length: length)
            reply(conn, token) { w in w.put(UInt32(id)); w.put(generation) }
        case .deregister:
            guard let ep = conn.endpoint else { throw MXError(.closedEndpoint, "deregister needs an open endpoint") }
            let id = Int(try r.get(UInt32.self))
            guard id < MXLimits.regionsPerEndpoint, ep.regionUsed[id] else {
                throw MXError(.badParameter, "region \(id) is not registered")
            }
            ep.regions.remove(id: id)
            ep.regionUsed[id] = false
            reply(conn, token)
        case .shareSegment:
            guard let ep = conn.endpoint else { throw MXError(.closedEndpoint, "shareSegment needs an open endpoint") }
            let key = try r.get(UInt64.self)
            let size = Int(clamping: try r.get(UInt64.self))
            let (ref, created) = try shareSegment(key: key, size: size, for: ep, conn: conn)
            reply(conn, token) { w in w.put(ref.raw); w.put(created) }
        case .leaveSegment:
            guard let ep = conn.endpoint else { throw MXError(.closedEndpoint, "leaveSegment needs an open endpoint") }
            let key = try r.get(UInt64.self)
            guard segments[key]?.members.contains(ep.serial) == true else {
                throw MXError(.badParameter, "endpoint \(ep.index) does not share a segment of that key")
            }
            leave(key: key, ep)
            reply(conn, token)
        case .info:
            let info = backendInfo()
            reply(conn, token) { info.encode(to: &$0) }
        case .resolveHost:
            let name = try r.getString()
            let nic = try resolve(hostname: name)
            reply(conn, token) { $0.put(nic) }
        case .resolveNIC:
            let nic = try r.get(UInt64.self)
            guard let board = nicIDs.firstIndex(of: nic) else {
                // A board of another host on the wire is named by its address.
                let (ip, b) = NICAddressing.wireAddress(of: nic)
                guard onWire(ip) else {
                    throw MXError(.unknownNICID, "no board with NIC id \(NICAddressing.format(nic)) on \(config.hostname)")
                }
                reply(conn, token) { $0.put(NICAddressing.boardName(hostname: NICAddressing.formatIPv4(ip), board: b)) }
                return
            }
            reply(conn, token) { $0.put(NICAddressing.boardName(hostname: config.hostname, board: board)) }
        default:
            throw MXError(.protocolError, "\(type) is not a request")
        }
    }

    func resolve(hostname name: String) throws(MXError) -> UInt64 {
        var host = Substring(name)
        var board = 0
        if let colon = name.lastIndex(of: ":") {
            host = name[..<colon]
            guard let b = Int(name[name.index(after: colon)...]) else {
                throw MXError(.unknownHost, "\(name): the board after ':' must be a number")
            }
            board = b
        }
        guard host == config.hostname || host == "localhost" else {
            // Other hosts on the wire are named by address (no name service is asked).
            let ip = String(host).withCString { cmx_parse_ipv4($0) }
            if onWire(ip) && ip != config.wire {
                guard board >= 0 && board < MXLimits.maxBoards else {
                    throw MXError(.invalidBoard, "\(name): a host has boards 0...\(MXLimits.maxBoards - 1), not \(board)")
                }
                return NICAddressing.nicID(ipv4: ip, board: board)
            }
            throw MXError(.unknownHost, "\(host) is not this host (\(config.hostname)); other hosts are named by their wire address (a.b.c.d[:board]) and need a backend with --wire")
        }
        guard board >= 0 && board < config.boards else {
            throw MXError(.invalidBoard, "\(config.hostname) has boards 0...\(config.boards - 1), not \(board)")
        }
        return nicIDs[board]
    }

    // MARK: endpoints

    /// Opens an endpoint; returns it with its wire socket (-1 when the board has no wire),
    /// which the caller hands over and closes.
    func openEndpoint(board requestedBoard: Int, index requestedIndex: Int, key: UInt32, conn: Connection) throws(MXError) -> (OpenedEndpoint, Int32) {
        guard conn.endpoint == nil else {
            throw MXError(.badParameter, "this frontend connection already has an endpoint open")
        }
        var board = requestedBoard
        var index = requestedIndex
        guard board == -1 || (board >= 0 && board < config.boards) else {
            throw MXError(.invalidBoard, "board \(board) does not exist (this host has \(config.boards))")
        }
        guard index == -1 || (index >= 0 && index < config.endpointsPerBoard) else {
            throw MXError(.invalidEndpoint, "endpoint \(index) is out of range 0...\(config.endpointsPerBoard - 1)")
        }
        if board == -1 || index == -1 {
            var found: (Int, Int)?
            for b in (board == -1 ? Array(0..<config.boards) : [board]) {
                if index == -1 {
                    if let i = boards[b].firstIndex(where: { $0 == nil }) { found = (b, i); break }
                } else if boards[b][index] == nil { found = (b, index); break }
            }
            guard let f = found else {
                throw MXError(.noFreeEndpoint, "every endpoint is in use (\(config.boards) board(s) of \(config.endpointsPerBoard))")
            }
            (board, index) = f
        } else if boards[board][index] != nil {
            throw MXError(.invalidEndpoint, "endpoint \(index) of board \(board) is busy; open another index or any")
        }
        let nic = nicIDs[board]
        sessionSeed = sessionSeed &* 1_664_525 &+ 1_013_904_223
        let session = sessionSeed | 1
        let (pfd, ppage) = try makeObject(name: "myrixen-ep\(board).\(index)-protected", size: ProtectedPage.size,
                                          keepMapped: true, sealWriters: true) { p in
            Shm.store(p, ProtectedPage.magicOffset, RingLayout.magic)
            Shm.store(p, ProtectedPage.ownerPIDOffset, conn.pid)
            Shm.store(p, ProtectedPage.stateOffset, ProtectedPage.stateOpen)
            Shm.store(p, ProtectedPage.sessionOffset, session)
            Shm.store(p, ProtectedPage.boardOffset, UInt16(board))
            Shm.store(p, ProtectedPage.endpointOffset, UInt16(index))
            Shm.store(p, ProtectedPage.nicIDOffset, nic)
        }
        let ufd: Int32, upage: UnsafeMutableRawPointer
        do {
            (ufd, upage) = try makeObject(name: "myrixen-ep\(board).\(index)-unprotected", size: UnprotectedPage.size,
                                          keepMapped: true, sealWriters: false) { _ in }
        } catch {
            SharedMemory.unmap(ppage, size: ProtectedPage.size)
            closeDescriptor(pfd)
            throw error
        }
        let wire: (fd: Int32, port: UInt16)
        do { wire = try makeEndpointWireSocket() } catch {
            SharedMemory.unmap(ppage, size: ProtectedPage.size)
            SharedMemory.unmap(upage, size: UnprotectedPage.size)
            closeDescriptor(pfd)
            closeDescriptor(ufd)
            throw error
        }
        let serial = nextSerial
        nextSerial += 1
        let ep = EndpointRecord(serial: serial, board: board, index: index, key: key, session: session, owner: conn,
                                protectedFD: pfd, protectedPage: ppage, unprotectedFD: ufd, unprotectedPage: upage)
        ep.wirePort = wire.port
        ep.wireBuffer = wire.fd >= 0 ? UInt32(max(0, cmx_socket_receive_buffer(wire.fd))) : 0
        boards[board][index] = ep
        endpointsBySerial[serial] = ep
        conn.endpoint = ep
        let pref = grants.grant(fd: pfd, size: ProtectedPage.size, to: conn.id, writable: false, owners: [serial])
        let uref = grants.grant(fd: ufd, size: UnprotectedPage.size, to: conn.id, writable: true, owners: [serial])
        grants.retain(fd: pfd) // the backend's own share, released at teardown
        grants.retain(fd: ufd)
        log("endpoint \(board).\(index) opened by pid \(conn.pid)")
        return (OpenedEndpoint(board: UInt16(board), endpoint: UInt16(index), nicID: nic, session: session,
                               protectedPage: pref, unprotectedPage: uref, wirePort: wire.port,
                               wireFrameLimit: wireFrameLimit), wire.fd)
    }

    /// Creates a shared-memory object, fills it through a temporary (or kept) mapping, and seals
    /// its size (and, for protected pages, new writable mappings). Nothing leaks on failure.
    func makeObject(name: String, size: Int, keepMapped: Bool, sealWriters: Bool,
                    fill: (UnsafeMutableRawPointer) -> Void) throws(MXError) -> (fd: Int32, pointer: UnsafeMutableRawPointer) {
        let fd = try SharedMemory.create(name: name, size: size)
        let mapped = keepMapped ? size : min(size, RingLayout.headerPage)
        let p: UnsafeMutableRawPointer
        do { p = try SharedMemory.map(fd, size: mapped, writable: true) } catch {
            closeDescriptor(fd)
            throw error
        }
        fill(p)
        do {
            if sealWriters { try SharedMemory.sealAgainstWriters(fd) } else { try SharedMemory.sealSize(fd) }
        } catch {
            SharedMemory.unmap(p, size: mapped)
            closeDescriptor(fd)
            throw error
        }
        if !keepMapped { SharedMemory.unmap(p, size: mapped) }
        return (fd, p)
    }

    /// Grants `ep` the segment named `key`, creating it (zeroed) if it is new. Whoever knows
    /// the key takes part: the program makes it random and tells it only to its own.
    func shareSegment(key: UInt64, size: Int, for ep: EndpointRecord, conn: Connection) throws(MXError) -> (GrantRef, Bool) {
        guard size > 0 && size <= MXLimits.maxSharedSegmentBytes else {
            throw MXError(.badParameter, "a shared segment of \(size) bytes; 1 to \(MXLimits.maxSharedSegmentBytes) bytes are allowed")
        }
        let taken = segments.values.filter { $0.members.contains(ep.serial) }.count
        var created = false
        if var seg = segments[key] {
            guard seg.size == size else {
                throw MXError(.badParameter, "the shared segment of this key has \(seg.size) bytes, not \(size)")
            }
            if !seg.members.contains(ep.serial) {
                guard taken < MXLimits.sharedSegmentsPerEndpoint else {
                    throw MXError(.accessDenied, "endpoint \(ep.index) already shares \(taken) segments, the most one may")
                }
                seg.members.insert(ep.serial)
                segments[key] = seg
            }
        } else {
            guard taken < MXLimits.sharedSegmentsPerEndpoint else {
                throw MXError(.accessDenied, "endpoint \(ep.index) already shares \(taken) segments, the most one may")
            }
            let fd = try makeObject(name: "myrixen-segment", size: size, keepMapped: false, sealWriters: false) { _ in }.fd
            grants.retain(fd: fd) // the segment's own share, released when its last member closes
            segments[key] = SharedSegment(fd: fd, size: size, members: [ep.serial])
            created = true
        }
        let seg = segments[key]!
        return (grants.grant(fd: seg.fd, size: size, to: conn.id, writable: true, owners: [ep.serial]), created)
    }

    /// `ep` leaves every segment it shares; a segment without members goes.
    func leaveSegments(_ ep: EndpointRecord) {
        for (key, seg) in segments where seg.members.contains(ep.serial) { leave(key: key, ep) }
    }

    /// `ep` leaves the segment of `key` (its grants of it are revoked, so it counts no more
    /// among the endpoint's segments); the segment goes with its last member.
    func leave(key: UInt64, _ ep: EndpointRecord) {
        guard var seg = segments[key], seg.members.remove(ep.serial) != nil else { return }
        for (ref, g) in grants.grants where g.fd == seg.fd && g.owners.contains(ep.serial) { grants.revoke(GrantRef(ref)) }
        if seg.members.isEmpty {
            segments[key] = nil
            grants.release(fd: seg.fd)
        } else {
            segments[key] = seg
        }
    }

    /// Closes an endpoint: peers hear of it, its grants are revoked, its memory goes.
    func teardown(_ ep: EndpointRecord) {
        leaveSegments(ep)
        cmx_store_release_u32(ep.protectedPage + ProtectedPage.stateOffset, ProtectedPage.stateClosed)
        for peerSerial in ep.peers {
            guard let peer = endpointsBySerial[peerSerial] else { continue }
            peer.peers.remove(ep.serial)
            pairs[PairKey(ep.serial, peerSerial)] = nil
            tellDetached(peer, nicID: nicIDs[ep.board], endpoint: UInt16(ep.index), session: ep.session)
            peer.bumpAttachGeneration()
        }
        pairs[PairKey(ep.serial, ep.serial)] = nil
        ep.peers.removeAll()
        announceClosed(ep)
        grants.revoke(owner: ep.serial)
        SharedMemory.unmap(ep.protectedPage, size: ProtectedPage.size)
        SharedMemory.unmap(ep.unprotectedPage, size: UnprotectedPage.size)
        grants.release(fd: ep.protectedFD)
        grants.release(fd: ep.unprotectedFD)
        boards[ep.board][ep.index] = nil
        endpointsBySerial[ep.serial] = nil
        ep.owner.endpoint = nil
        log("endpoint \(ep.board).\(ep.index) closed")
    }

    /// Tells `ep`'s owner that a peer (of this host or another) is gone; the caller bumps the
    /// attach generation once it has said all.
    func tellDetached(_ ep: EndpointRecord, nicID: UInt64, endpoint: UInt16, session: UInt32, flags: UInt16 = 0) {
        ep.owner.post(ControlMessage.encode(.peerDetached, token: 0, flags: flags) { w in
            w.put(nicID); w.put(endpoint); w.put(session)
        })
    }

    // MARK: connect

    /// Connects `conn`'s endpoint to one of this host (the pair's grants and the target's event
    /// channel), or starts a connect to another host over the wire (nil: answered later).
    func connect(conn: Connection, token: UInt32, nicID: UInt64, endpoint: Int, key: UInt32) throws(MXError) -> (PeerGrant, Int32)? {
        guard let me = conn.endpoint else { throw MXError(.closedEndpoint, "connect needs an open endpoint") }
        guard let board = nicIDs.firstIndex(of: nicID) else {
            try startRemoteConnect(conn: conn, token: token, me: me, nicID: nicID, endpoint: endpoint, key: key)
            return nil
        }
        guard endpoint >= 0 && endpoint < config.endpointsPerBoard, let target = boards[board][endpoint] else {
            throw MXError(.invalidEndpoint, "no endpoint \(endpoint) is open on \(NICAddressing.boardName(hostname: config.hostname, board: board))")
        }
        guard target.key == key else {
            refusedConnects += 1
            throw MXError(.badConnectionKey, "endpoint \(endpoint) on \(NICAddressing.boardName(hostname: config.hostname, board: board)) refused the key 0x\(String(key, radix: 16))")
        }
        guard let targetEvent = target.eventChannel else { throw MXError(.peerClosed, "the target endpoint has no event channel") }
        let pk = PairKey(me.serial, target.serial)
        if var existing = pairs[pk]?[me.serial] {
            existing.grant.alreadyAttached = true
            return (existing.grant, targetEvent.fd)
        }
        let ringSize = RingLayout.headerPage + config.ringDataBytes
        func makeRing(_ name: String) throws(MXError) -> Int32 {
            try makeObject(name: name, size: ringSize, keepMapped: false, sealWriters: false) { p in
                formatRing(p, dataBytes: config.ringDataBytes)
            }.fd
        }
        let owners = [me.serial, target.serial]
        if target === me {
            let ring = try makeRing("myrixen-ring-self")
            let rref = grants.grant(fd: ring, size: ringSize, to: conn.id, writable: true, owners: owners)
            let g = PeerGrant(nicID: nicID, endpoint: UInt16(endpoint), session: me.session, pid: conn.pid,
                              ringOut: rref, ringIn: rref,
                              peerProtected: grants.grant(fd: me.protectedFD, size: ProtectedPage.size, to: conn.id, writable: false, owners: owners),
                              peerUnprotected: grants.grant(fd: me.unprotectedFD, size: UnprotectedPage.size, to: conn.id, writable: false, owners: owners),
                              alreadyAttached: false)
            pairs[pk] = [me.serial: PairSide(grant: g)]
            return (g, targetEvent.fd)
        }
        let ab = try makeRing("myrixen-ring-\(me.board).\(me.index)-\(target.board).\(target.index)")
        let ba: Int32
        do { ba = try makeRing("myrixen-ring-\(target.board).\(target.index)-\(me.board).\(me.index)") } catch {
            closeDescriptor(ab); throw error
        }
        let tconn = target.owner
        let forMe = PeerGrant(
            nicID: nicID, endpoint: UInt16(endpoint), session: target.session, pid: tconn.pid,
            ringOut: grants.grant(fd: ab, size: ringSize, to: conn.id, writable: true, owners: owners),
            ringIn: grants.grant(fd: ba, size: ringSize, to: conn.id, writable: true, owners: owners),
            peerProtected: grants.grant(fd: target.protectedFD, size: ProtectedPage.size, to: conn.id, writable: false, owners: owners),
            peerUnprotected: grants.grant(fd: target.unprotectedFD, size: UnprotectedPage.size, to: conn.id, writable: false, owners: owners),
            alreadyAttached: false)
        let forTarget = PeerGrant(
            nicID: nicIDs[me.board], endpoint: UInt16(me.index), session: me.session, pid: conn.pid,
            ringOut: grants.grant(fd: ba, size: ringSize, to: tconn.id, writable: true, owners: owners),
            ringIn: grants.grant(fd: ab, size: ringSize, to: tconn.id, writable: true, owners: owners),
            peerProtected: grants.grant(fd: me.protectedFD, size: ProtectedPage.size, to: tconn.id, writable: false, owners: owners),
            peerUnprotected: grants.grant(fd: me.unprotectedFD, size: UnprotectedPage.size, to: tconn.id, writable: false, owners: owners),
            alreadyAttached: false)
        // The rings are kept open by their grants alone: the last revoked closes each.
        pairs[pk] = [me.serial: PairSide(grant: forMe), target.serial: PairSide(grant: forTarget)]
        me.peers.insert(target.serial)
        target.peers.insert(me.serial)
        if let myEvent = conn.eventChannel {
            tconn.post(ControlMessage.encode(.peerAttached, token: 0) { forTarget.encode(to: &$0) }, fds: [myEvent.fd])
        }
        target.bumpAttachGeneration()
        log("endpoint \(me.board).\(me.index) connected to \(target.board).\(target.index)")
        return (forMe, targetEvent.fd)
    }

    // MARK: info

    func boardInfos() -> [MXBoardInfo] {
        (0..<config.boards).map { b in
            MXBoardInfo(number: b, nicID: nicIDs[b], name: NICAddressing.boardName(hostname: config.hostname, board: b),
                        lineSpeedGbps: MXLimits.lineSpeedGbps, endpointLimit: config.endpointsPerBoard,
                        endpointsInUse: boards[b].filter { $0 != nil }.count)
        }
    }

    func backendInfo() -> MXBackendInfo {
        var eps: [MXEndpointInfo] = []
        for b in boards.indices {
            for case let ep? in boards[b] {
                var regions: [(UInt32, UInt64, UInt64)] = []
                for id in 0..<MXLimits.regionsPerEndpoint where ep.regionUsed[id] {
                    if let d = ep.regions.describe(id) { regions.append((UInt32(id), d.base, d.length)) }
                }
                let counters = MXCounter.allCases.map { c in
                    cmx_load_relaxed_u64(ep.unprotectedPage + c.offset)
                }
                eps.append(MXEndpointInfo(board: b, endpoint: ep.index, ownerPID: ep.owner.pid, session: ep.session,
                                          peers: ep.peers.count + ep.remotePeers.count, regions: regions.map { (id: $0.0, base: $0.1, length: $0.2) },
                                          counters: counters))
            }
        }
        return MXBackendInfo(hostname: config.hostname, backendPID: getpid(), socketPath: config.socketPath,
                             ringBytes: config.ringDataBytes, boards: boardInfos(), endpoints: eps,
                             grantsActive: grants.activeCount, grantsRevoked: grants.revokedCount,
                             refusedGrantMaps: grants.refusedMaps, refusedConnects: refusedConnects,
                             sharedMemoryBytes: grants.objectBytes(),
                             wire: config.wire.map { "\(NICAddressing.formatIPv4($0)):\(MXWire.port)" } ?? "")
    }
}
