/// The control protocol between myrifront and myrback: one message per SOCK_SEQPACKET packet,
/// `[type u16][flags u16][token u32]` then a payload; descriptors travel as SCM_RIGHTS.
/// Requests carry a token the reply repeats; events from the backend carry token 0.
public enum ControlType: UInt16, Sendable {
    // The xenstore-like handshake.
    case frontendState = 1      // state u8
    case backendState = 2       // state u8 (+ the connection's event channel at InitWait)
    // Replies.
    case reply = 3
    case error = 4              // code string, message string
    // Requests.
    case boardInfo = 10
    case openEndpoint = 11      // board i32 (-1 any), endpoint i32 (-1 any), key u32
    case closeEndpoint = 12
    case mapGrants = 13         // count u16, refs u32...
    case connect = 14           // nicID u64, endpoint u16, key u32
    case register = 15          // base u64, length u64
    case deregister = 16        // region u32
    case info = 17
    case resolveHost = 18       // name string
    case resolveNIC = 19        // nicID u64
    case shareSegment = 20      // key u64, size u64 -> grant u32, created bool
    case leaveSegment = 21      // key u64
    // Events (backend to frontend).
    case peerAttached = 30      // PeerGrant (+ the peer's event channel)
    case peerDetached = 31      // nicID u64, endpoint u16, session u32
    case remotePeerAttached = 32 // RemotePeer: an endpoint of another host connected to this one
}

/// Header flags.
public enum ControlFlags {
    /// A connect reply describing a peer on another host (`RemotePeer`, no descriptors).
    public static let remotePeer: UInt16 = 1
    /// peerDetached: the peer's host stopped answering (not a close).
    public static let hostLost: UInt16 = 2
}

public struct ControlHeader: Sendable {
    public static let size = 8
    public var type: ControlType
    public var flags: UInt16
    public var token: UInt32
}

public struct ControlMessage {
    public var header: ControlHeader
    public var payload: ByteReader
    public var fds: [Int32]

    /// Encodes a message: header then what `body` writes.
    public static func encode(_ type: ControlType, token: UInt32, flags: UInt16 = 0,
                              _ body: (inout ByteWriter) -> Void = { _ in }) -> [UInt8] {
        var w = ByteWriter()
        w.put(type.rawValue)
        w.put(flags)
        w.put(token)
        body(&w)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8], fds: [Int32]) throws(MXError) -> ControlMessage {
        var r = ByteReader(bytes)
        let raw = try r.get(UInt16.self)
        guard let type = ControlType(rawValue: raw) else {
            throw MXError(.protocolError, "unknown control message type \(raw)")
        }
        let flags = try r.get(UInt16.self)
        let token = try r.get(UInt32.self)
        return ControlMessage(header: ControlHeader(type: type, flags: flags, token: token), payload: r, fds: fds)
    }

    public static func encodeError(_ error: MXError, token: UInt32) -> [UInt8] {
        encode(.error, token: token) { w in
            w.put(error.code.rawValue)
            w.put(error.message)
        }
    }

    public static func decodeError(_ r: inout ByteReader) -> MXError {
        do {
            let code = try r.getString()
            let message = try r.getString()
            return MXError(MXError.Code(rawValue: code) ?? .protocolError, message)
        } catch {
            return error
        }
    }
}

/// A grant reference: the number of a shared-memory object (or pages of one) that the backend
/// lets one frontend map. Foreign or revoked references do not map.
public struct GrantRef: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt32
    public init(_ raw: UInt32) { self.raw = raw }
    public var description: String { "gref \(raw)" }
}

/// What an endpoint needs to talk to a peer endpoint on this host: the pair's two rings and
/// the peer's two pages, as grant references, plus the peer's identity. The peer's event
/// channel travels with the message as a descriptor.
public struct PeerGrant: WireCodable, Sendable, Equatable {
    public var nicID: UInt64
    public var endpoint: UInt16
    public var session: UInt32
    public var pid: Int32
    /// The ring this side writes (toward the peer) and the ring it reads (from the peer).
    public var ringOut: GrantRef
    public var ringIn: GrantRef
    public var peerProtected: GrantRef
    public var peerUnprotected: GrantRef
    /// The peer endpoint's channel id: incoming messages from the peer name it.
    public var alreadyAttached: Bool

    public init(nicID: UInt64, endpoint: UInt16, session: UInt32, pid: Int32, ringOut: GrantRef, ringIn: GrantRef,
                peerProtected: GrantRef, peerUnprotected: GrantRef, alreadyAttached: Bool) {
        self.nicID = nicID
        self.endpoint = endpoint
        self.session = session
        self.pid = pid
        self.ringOut = ringOut
        self.ringIn = ringIn
        self.peerProtected = peerProtected
        self.peerUnprotected = peerUnprotected
        self.alreadyAttached = alreadyAttached
    }

    public func encode(to w: inout ByteWriter) {
        w.put(nicID); w.put(endpoint); w.put(session); w.put(pid)
        w.put(ringOut.raw); w.put(ringIn.raw); w.put(peerProtected.raw); w.put(peerUnprotected.raw)
        w.put(alreadyAttached)
    }

    public init(from r: inout ByteReader) throws(MXError) {
        nicID = try r.get(); endpoint = try r.get(); session = try r.get(); pid = try r.get()
        ringOut = GrantRef(try r.get()); ringIn = GrantRef(try r.get())
        peerProtected = GrantRef(try r.get()); peerUnprotected = GrantRef(try r.get())
        alreadyAttached = try r.getBool()
    }
}

/// A peer endpoint on another host, reached over the wire: its identity, the address of its
/// wire socket, how much that socket's receive buffer holds (what may be in flight to it) and
/// the largest frame its host's link takes (`MXWire.frameLimit`).
public struct RemotePeer: WireCodable, Sendable, Equatable {
    public var nicID: UInt64
    public var endpoint: UInt16
    public var session: UInt32
    public var ipv4: UInt32
    public var port: UInt16
    public var receiveBuffer: UInt32
    public var frameLimit: UInt32

    public init(nicID: UInt64, endpoint: UInt16, session: UInt32, ipv4: UInt32, port: UInt16, receiveBuffer: UInt32,
                frameLimit: UInt32) {
        self.nicID = nicID; self.endpoint = endpoint; self.session = session; self.ipv4 = ipv4; self.port = port
        self.receiveBuffer = receiveBuffer; self.frameLimit = frameLimit
    }

    public func encode(to w: inout ByteWriter) {
        w.put(nicID); w.put(endpoint); w.put(session); w.put(ipv4); w.put(port); w.put(receiveBuffer); w.put(frameLimit)
    }

    public init(from r: inout ByteReader) throws(MXError) {
        nicID = try r.get(); endpoint = try r.get(); session = try r.get(); ipv4 = try r.get(); port = try r.get()
        receiveBuffer = try r.get(); frameLimit = try r.get()
    }
}

/// The reply to `openEndpoint`.
public struct OpenedEndpoint: WireCodable, Sendable {
    public var board: UInt16
    public var endpoint: UInt16
    public var nicID: UInt64
    public var session: UInt32
    public var protectedPage: GrantRef
    public var unprotectedPage: GrantRef
    /// The port of the endpoint's wire socket (the reply's descriptor), 0 when the board has no
    /// wire, and the largest frame this host's link takes (`MXWire.frameLimit`).
    public var wirePort: UInt16
    public var wireFrameLimit: UInt32

    public init(board: UInt16, endpoint: UInt16, nicID: UInt64, session: UInt32, protectedPage: GrantRef,
                unprotectedPage: GrantRef, wirePort: UInt16 = 0, wireFrameLimit: UInt32 = 0) {
        self.board = board; self.endpoint = endpoint; self.nicID = nicID; self.session = session
        self.protectedPage = protectedPage; self.unprotectedPage = unprotectedPage; self.wirePort = wirePort
        self.wireFrameLimit = wireFrameLimit
    }

    public func encode(to w: inout ByteWriter) {
        w.put(board); w.put(endpoint); w.put(nicID); w.put(session)
        w.put(protectedPage.raw); w.put(unprotectedPage.raw); w.put(wirePort); w.put(wireFrameLimit)
    }

    public init(from r: inout ByteReader) throws(MXError) {
        board = try r.get(); endpoint = try r.get(); nicID = try r.get(); session = try r.get()
        protectedPage = GrantRef(try r.get()); unprotectedPage = GrantRef(try r.get()); wirePort = try r.get()
        wireFrameLimit = try r.get()
    }
}

/// One board, as `mx_info` and `MXContext.boards` show it.
public struct MXBoardInfo: WireCodable, Sendable, Equatable {
    public var number: Int
    public var nicID: UInt64
    public var name: String
    public var lineSpeedGbps: Int
    public var endpointLimit: Int
    public var endpointsInUse: Int

    public init(number: Int, nicID: UInt64, name: String, lineSpeedGbps: Int, endpointLimit: Int, endpointsInUse: Int) {
        self.number = number; self.nicID = nicID; self.name = name
        self.lineSpeedGbps = lineSpeedGbps; self.endpointLimit = endpointLimit; self.endpointsInUse = endpointsInUse
    }

    public func encode(to w: inout ByteWriter) {
        w.put(UInt32(number)); w.put(nicID); w.put(name); w.put(UInt32(lineSpeedGbps))
        w.put(UInt32(endpointLimit)); w.put(UInt32(endpointsInUse))
    }

    public init(from r: inout ByteReader) throws(MXError) {
        number = Int(try r.get(UInt32.self)); nicID = try r.get(); name = try r.getString()
        lineSpeedGbps = Int(try r.get(UInt32.self)); endpointLimit = Int(try r.get(UInt32.self))
        endpointsInUse = Int(try r.get(UInt32.self))
    }
}

/// One open endpoint, as `mx_info` shows it.
public struct MXEndpointInfo: WireCodable, Sendable {
    public var board: Int
    public var endpoint: Int
    public var ownerPID: Int32
    public var session: UInt32
    public var peers: Int
    public var regions: [(id: UInt32, base: UInt64, length: UInt64)]
    public var counters: [UInt64]

    public init(board: Int, endpoint: Int, ownerPID: Int32, session: UInt32, peers: Int,
                regions: [(id: UInt32, base: UInt64, length: UInt64)], counters: [UInt64]) {
        self.board = board; self.endpoint = endpoint; self.ownerPID = ownerPID; self.session = session
        self.peers = peers; self.regions = regions; self.counters = counters
    }

    public func counter(_ c: MXCounter) -> UInt64 { c.rawValue < counters.count ? counters[c.rawValue] : 0 }

    public func encode(to w: inout ByteWriter) {
        w.put(UInt32(board)); w.put(UInt32(endpoint)); w.put(ownerPID); w.put(session); w.put(UInt32(peers))
        w.put(UInt32(regions.count))
        for r in regions { w.put(r.id); w.put(r.base); w.put(r.length) }
        w.put(UInt32(counters.count))
        for c in counters { w.put(c) }
    }

    public init(from r: inout ByteReader) throws(MXError) {
        board = Int(try r.get(UInt32.self)); endpoint = Int(try r.get(UInt32.self)); ownerPID = try r.get()
        session = try r.get(); peers = Int(try r.get(UInt32.self))
        let nr = Int(try r.get(UInt32.self))
        guard nr <= MXLimits.regionsPerEndpoint else { throw MXError(.protocolError, "\(nr) regions in an endpoint report") }
        regions = []
        for _ in 0..<nr { regions.append((try r.get(), try r.get(), try r.get())) }
        let nc = Int(try r.get(UInt32.self))
        guard nc <= 64 else { throw MXError(.protocolError, "\(nc) counters in an endpoint report") }
        counters = []
        for _ in 0..<nc { counters.append(try r.get()) }
    }
}

/// The backend's whole state, for `mx_info`.
public struct MXBackendInfo: WireCodable, Sendable {
    public var hostname: String
    public var backendPID: Int32
    public var socketPath: String
    public var ringBytes: Int
    public var boards: [MXBoardInfo]
    public var endpoints: [MXEndpointInfo]
    public var grantsActive: Int
    public var grantsRevoked: Int
    public var refusedGrantMaps: Int
    public var refusedConnects: Int
    public var sharedMemoryBytes: Int
    /// `address:port` of the board port on the wire, empty without a wire.
    public var wire: String

    public init(hostname: String, backendPID: Int32, socketPath: String, ringBytes: Int, boards: [MXBoardInfo],
                endpoints: [MXEndpointInfo], grantsActive: Int, grantsRevoked: Int, refusedGrantMaps: Int,
                refusedConnects: Int, sharedMemoryBytes: Int, wire: String = "") {
        self.wire = wire
        self.hostname = hostname; self.backendPID = backendPID; self.socketPath = socketPath; self.ringBytes = ringBytes
        self.boards = boards; self.endpoints = endpoints; self.grantsActive = grantsActive
        self.grantsRevoked = grantsRevoked; self.refusedGrantMaps = refusedGrantMaps
        self.refusedConnects = refusedConnects; self.sharedMemoryBytes = sharedMemoryBytes
    }

    public func encode(to w: inout ByteWriter) {
        w.put(hostname); w.put(backendPID); w.put(socketPath); w.put(UInt64(ringBytes))
        w.put(UInt32(boards.count)); for b in boards { b.encode(to: &w) }
        w.put(UInt32(endpoints.count)); for e in endpoints { e.encode(to: &w) }
        w.put(UInt64(grantsActive)); w.put(UInt64(grantsRevoked)); w.put(UInt64(refusedGrantMaps))
        w.put(UInt64(refusedConnects)); w.put(UInt64(sharedMemoryBytes)); w.put(wire)
    }

    public init(from r: inout ByteReader) throws(MXError) {
        hostname = try r.getString(); backendPID = try r.get(); socketPath = try r.getString()
        ringBytes = Int(try r.get(UInt64.self))
        let nb = Int(try r.get(UInt32.self))
        guard nb <= MXLimits.maxBoards else { throw MXError(.protocolError, "\(nb) boards in a backend report") }
        boards = []
        for _ in 0..<nb { boards.append(try MXBoardInfo(from: &r)) }
        let ne = Int(try r.get(UInt32.self))
        guard ne <= MXLimits.maxBoards * MXLimits.maxEndpointsPerBoard else {
            throw MXError(.protocolError, "\(ne) endpoints in a backend report")
        }
        endpoints = []
        for _ in 0..<ne { endpoints.append(try MXEndpointInfo(from: &r)) }
        grantsActive = Int(try r.get(UInt64.self)); grantsRevoked = Int(try r.get(UInt64.self))
        refusedGrantMaps = Int(try r.get(UInt64.self)); refusedConnects = Int(try r.get(UInt64.self))
        sharedMemoryBytes = Int(try r.get(UInt64.self))
        wire = try r.getString()
    }
}

/// NIC ids: 48 bits, MAC-like (locally administered), derived from the host name and the
/// board number so every host of an emulated cluster gets distinct, stable ids.
public enum NICAddressing {
    public static func nicID(hostname: String, board: Int) -> UInt64 {
        var h: UInt32 = 2_166_136_261
        for b in hostname.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return (0x02 << 40) | (UInt64(h) << 8) | UInt64(board & 0xFF)
    }

    public static func format(_ nicID: UInt64) -> String {
        (0..<6).reversed().map { i in
            let b = (nicID >> (UInt64(i) * 8)) & 0xFF
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined(separator: ":")
    }

    /// `host:board`, MX's board name.
    public static func boardName(hostname: String, board: Int) -> String { "\(hostname):\(board)" }
}
