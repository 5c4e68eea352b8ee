/// The library handle (MX's `mx_init`): reaches this host's backend, starting one on demand,
/// and answers board and address-translation questions. Endpoints are opened from it.
public final class MXContext {
    public let socketPath: String
    let control: BackendConnection
    public let hostname: String
    public private(set) var boards: [MXBoardInfo]
    public private(set) var isFinalized = false

    /// Initializes the library. `socketPath` defaults to `$MYRIXEN_SOCKET` or
    /// `/tmp/myrixen-<uid>/myrback.sock`; with `startBackend` a missing backend is started.
    public init(socketPath: String? = nil, startBackend: Bool = true) throws(MXError) {
        let path = socketPath ?? BackendLocation.defaultSocketPath()
        self.socketPath = path
        control = try BackendConnection.open(path: path, startIfNeeded: startBackend)
        (hostname, boards) = try MXContext.fetchBoards(control)
    }

    deinit { finalize() }

    static func fetchBoards(_ c: BackendConnection) throws(MXError) -> (String, [MXBoardInfo]) {
        var reply = try c.call(.boardInfo)
        let host = try reply.payload.getString()
        let n = Int(try reply.payload.get(UInt32.self))
        guard n <= MXLimits.maxBoards else { throw MXError(.protocolError, "backend reported \(n) boards") }
        var boards: [MXBoardInfo] = []
        for _ in 0..<n { boards.append(try MXBoardInfo(from: &reply.payload)) }
        return (host, boards)
    }

    func ensureOpen() throws(MXError) {
        if isFinalized { throw MXError(.notInitialized, "the MyriXen context was finalized") }
    }

    /// Re-reads board information (endpoints in use change as endpoints open and close).
    public func refreshBoards() throws(MXError) {
        try ensureOpen()
        (_, boards) = try MXContext.fetchBoards(control)
    }

    /// Opens an endpoint: `board` and `endpoint` nil mean "any free one". `key` is what peers
    /// must present to connect.
    public func openEndpoint(board: Int? = nil, endpoint: Int? = nil, key: UInt32 = 0,
                             options: MXEndpointOptions = MXEndpointOptions()) throws(MXError) -> MXEndpoint {
        try ensureOpen()
        if let b = board, b < 0 { throw MXError(.invalidBoard, "board \(b) is negative; use nil for any board") }
        if let e = endpoint, e < 0 { throw MXError(.invalidEndpoint, "endpoint \(e) is negative; use nil for any endpoint") }
        let conn = try BackendConnection.open(path: socketPath, startIfNeeded: false)
        var reply: ControlMessage
        do {
            reply = try conn.call(.openEndpoint) { w in
                w.put(Int32(board ?? -1)); w.put(Int32(endpoint ?? -1)); w.put(key)
            }
        } catch {
            conn.close()
            throw error
        }
        let opened: OpenedEndpoint
        do { opened = try OpenedEndpoint(from: &reply.payload) } catch {
            reply.fds.forEach(closeDescriptor)
            conn.close()
            throw error
        }
        // The board's wire socket for this endpoint, when the host has a wire.
        let wireSocket = opened.wirePort != 0 ? reply.fds.first ?? -1 : -1
        for fd in reply.fds where fd != wireSocket { closeDescriptor(fd) }
        do {
            return try MXEndpoint(connection: conn, opened: opened, wireSocket: wireSocket, key: key, hostname: hostname, options: options)
        } catch {
            conn.close()
            throw error
        }
    }

    /// `host:board` (or `host`, board 0) to a NIC id.
    public func hostnameToNICID(_ name: String) throws(MXError) -> UInt64 {
        try ensureOpen()
        var reply = try control.call(.resolveHost) { $0.put(name) }
        return try reply.payload.get(UInt64.self)
    }

    /// A NIC id to its `host:board` name.
    public func nicIDToHostname(_ nicID: UInt64) throws(MXError) -> String {
        try ensureOpen()
        var reply = try control.call(.resolveNIC) { $0.put(nicID) }
        return try reply.payload.getString()
    }

    public func boardNumberToNICID(_ board: Int) throws(MXError) -> UInt64 {
        try ensureOpen()
        guard let b = boards.first(where: { $0.number == board }) else {
            throw MXError(.invalidBoard, "this host has boards 0...\(boards.count - 1), not \(board)")
        }
        return b.nicID
    }

    public func nicIDToBoardNumber(_ nicID: UInt64) throws(MXError) -> Int {
        try ensureOpen()
        guard let b = boards.first(where: { $0.nicID == nicID }) else {
            throw MXError(.unknownNICID, "\(NICAddressing.format(nicID)) is not a board of this host")
        }
        return b.number
    }

    /// Everything the backend knows (what `mx_info` prints).
    public func info() throws(MXError) -> MXBackendInfo {
        try ensureOpen()
        var reply = try control.call(.info)
        return try MXBackendInfo(from: &reply.payload)
    }

    /// Ends use of the library. Endpoints should be closed first; it is idempotent.
    public func finalize() {
        guard !isFinalized else { return }
        isFinalized = true
        control.close()
    }
}
