#if canImport(Glibc)
import Glibc
#endif

/// myrifront's link to its backend: one control connection, brought up through the xenbus
/// states (Initialising -> InitWait -> Initialised -> Connected), with the event channel the
/// backend allocates at InitWait. Requests are synchronous calls; events the backend pushes
/// (peer attached, peer detached) are queued for the endpoint's progress engine.
final class BackendConnection {
    let socket: ControlSocket
    let socketPath: String
    private(set) var handshake = XenbusHandshake(role: .frontend)
    private(set) var eventChannel: EventChannel
    private var nextToken: UInt32 = 1
    var pendingEvents: [ControlMessage] = []
    private var pendingReplies: [UInt32: ControlMessage] = [:]
    private(set) var dead = false
    /// How long a call waits for the backend before giving up.
    static let callTimeoutMs: Int32 = 10_000

    /// Connects to the backend at `path`, starting one on demand when none answers.
    static func open(path: String, startIfNeeded: Bool) throws(MXError) -> BackendConnection {
        do {
            return try BackendConnection(path: path)
        } catch where error.code == .backendUnavailable && startIfNeeded {
            try BackendLocation.startBackend(socketPath: path)
            let deadline = monotonicNanoseconds() + 5_000_000_000
            var delay: UInt32 = 1_000
            while true {
                do { return try BackendConnection(path: path) } catch where error.code == .backendUnavailable {
                    if monotonicNanoseconds() > deadline {
                        throw MXError(.backendUnavailable, "started myrback for \(path) but it did not answer within 5 s")
                    }
                    usleep(delay)
                    delay = min(delay * 2, 50_000)
                }
            }
        }
    }

    init(path: String) throws(MXError) {
        socketPath = path
        socket = try ControlSocket.connect(path: path)
        eventChannel = EventChannel(fd: -1)
        // Xen's frontend handshake. A backend that refuses the connection (too many) says why
        // and closes it: that reason is what the caller hears, even if our first send found
        // the connection closed already.
        do { try send(.frontendState, token: 0) { $0.put(XenbusState.initialising.rawValue) } } catch {
            throw refusal() ?? error
        }
        var msg = try receiveDirect()
        if msg.header.type == .error {
            msg.fds.forEach(closeDescriptor)
            throw ControlMessage.decodeError(&msg.payload)
        }
        guard msg.header.type == .backendState, let s1 = XenbusState(rawValue: try msg.payload.get(UInt8.self)) else {
            throw MXError(.protocolError, "backend did not answer the handshake")
        }
        try handshake.observe(peer: s1)
        guard s1 == .initWait, let evfd = msg.fds.first else {
            msg.fds.forEach(closeDescriptor)
            throw MXError(.protocolError, "backend went to \(s1) without an event channel")
        }
        eventChannel = EventChannel(fd: evfd) // bound: ours to wait on
        try handshake.advance(to: .initialised)
        try send(.frontendState, token: 0) { $0.put(XenbusState.initialised.rawValue) }
        msg = try receiveDirect()
        guard msg.header.type == .backendState, let s2 = XenbusState(rawValue: try msg.payload.get(UInt8.self)) else {
            throw MXError(.protocolError, "backend did not finish the handshake")
        }
        try handshake.observe(peer: s2)
        try handshake.advance(to: .connected)
        try send(.frontendState, token: 0) { $0.put(XenbusState.connected.rawValue) }
    }

    deinit {
        if eventChannel.fd >= 0 { closeDescriptor(eventChannel.fd) }
    }

    /// Closing -> Closed, then the socket goes.
    func close() {
        if !dead && socket.fd >= 0 {
            try? handshake.advance(to: .closing)
            try? send(.frontendState, token: 0) { $0.put(XenbusState.closing.rawValue) }
            try? handshake.advance(to: .closed)
        }
        socket.close()
        dead = true
    }

    /// The error the backend sent before it closed the connection, if it did.
    private func refusal() -> MXError? {
        guard case let .message(bytes, fds)? = try? socket.receive(wait: false) else { return nil }
        fds.forEach(closeDescriptor)
        guard var msg = try? ControlMessage.decode(bytes, fds: []), msg.header.type == .error else { return nil }
        return ControlMessage.decodeError(&msg.payload)
    }

    private func send(_ type: ControlType, token: UInt32, _ body: (inout ByteWriter) -> Void) throws(MXError) {
        try socket.send(ControlMessage.encode(type, token: token, body))
    }

    private func receiveDirect() throws(MXError) -> ControlMessage {
        guard socket.waitReadable(timeoutMs: Self.callTimeoutMs) else {
            throw MXError(.backendUnavailable, "the backend at \(socketPath) did not answer within \(Self.callTimeoutMs / 1000) s")
        }
        switch try socket.receive(wait: true) {
        case let .message(bytes, fds): return try ControlMessage.decode(bytes, fds: fds)
        case .closed, .wouldBlock:
            dead = true
            // A backend that refused us said why before it closed. (If our own message was
            // still unread then, the first receive reports a reset; the reason is behind it.)
            throw refusal() ?? MXError(.backendDied, "the backend at \(socketPath) closed the connection")
        }
    }

    /// Sends a request; returns its token (for `call` or a later `takeReply`).
    func request(_ type: ControlType, _ body: (inout ByteWriter) -> Void = { _ in }) throws(MXError) -> UInt32 {
        guard !dead else { throw MXError(.backendDied, "the backend at \(socketPath) is gone") }
        let token = nextToken
        nextToken = nextToken &+ 1 == 0 ? 1 : nextToken &+ 1
        do { try send(type, token: token, body) } catch {
            dead = true
            throw MXError(.backendDied, "the backend at \(socketPath) is gone (\(error.message))")
        }
        return token
    }

    /// A synchronous request: waits for its reply, queueing events met on the way.
    func call(_ type: ControlType, _ body: (inout ByteWriter) -> Void = { _ in }) throws(MXError) -> ControlMessage {
        let token = try request(type, body)
        while true {
            if let r = try takeReply(token) { return r }
            let msg = try receiveDirect()
            stash(msg)
        }
    }

    /// The reply to `token` if it has arrived (throws the backend's error if it was one).
    func takeReply(_ token: UInt32) throws(MXError) -> ControlMessage? {
        guard var msg = pendingReplies.removeValue(forKey: token) else { return nil }
        if msg.header.type == .error {
            msg.fds.forEach(closeDescriptor)
            throw ControlMessage.decodeError(&msg.payload)
        }
        return msg
    }

    private func stash(_ msg: ControlMessage) {
        switch msg.header.type {
        case .reply, .error: pendingReplies[msg.header.token] = msg
        default: pendingEvents.append(msg)
        }
    }

    /// Reads whatever the backend sent without blocking. Returns false once the backend is gone.
    @discardableResult
    func pump() -> Bool {
        guard !dead else { return false }
        while true {
            let received: ControlSocket.Received
            do { received = try socket.receive(wait: false) } catch {
                dead = true
                return false
            }
            switch received {
            case .wouldBlock: return true
            case .closed:
                dead = true
                return false
            case let .message(bytes, fds):
                guard let msg = try? ControlMessage.decode(bytes, fds: fds) else {
                    fds.forEach(closeDescriptor)
                    continue
                }
                stash(msg)
            }
        }
    }

    /// Maps grants: asks the backend for their objects and maps each one.
    func mapGrants(_ refs: [GrantRef]) throws(MXError) -> [(pointer: UnsafeMutableRawPointer, size: Int)] {
        var reply = try call(.mapGrants) { w in
            w.put(UInt16(refs.count))
            for r in refs { w.put(r.raw) }
        }
        defer { reply.fds.forEach(closeDescriptor) }
        let n = Int(try reply.payload.get(UInt16.self))
        guard n == refs.count, reply.fds.count == n else {
            throw MXError(.protocolError, "asked for \(refs.count) grants, got \(n) with \(reply.fds.count) descriptors")
        }
        var out: [(UnsafeMutableRawPointer, Int)] = []
        for i in 0..<n {
            let size = Int(try reply.payload.get(UInt64.self))
            let writable = try reply.payload.getBool()
            do {
                out.append((try SharedMemory.map(reply.fds[i], size: size, writable: writable), size))
            } catch {
                for (p, s) in out { SharedMemory.unmap(p, size: s) }
                throw error
            }
        }
        return out
    }
}
