/// The xenstore device states, with Xen's numbering. Frontend and backend each hold one and
/// publish it to the other; the handshake below allows only the transitions Xen's drivers make.
public enum XenbusState: UInt8, Sendable, CustomStringConvertible {
    case unknown = 0
    case initialising = 1
    case initWait = 2
    case initialised = 3
    case connected = 4
    case closing = 5
    case closed = 6

    public var description: String {
        switch self {
        case .unknown: "Unknown"
        case .initialising: "Initialising"
        case .initWait: "InitWait"
        case .initialised: "Initialised"
        case .connected: "Connected"
        case .closing: "Closing"
        case .closed: "Closed"
        }
    }
}

/// One side's view of the frontend/backend handshake.
///
/// Backend: Initialising -> InitWait (event channel allocated) -> Connected (once the frontend
/// is Initialised). Frontend: Initialising -> Initialised (event channel bound, once the
/// backend is in InitWait) -> Connected (once the backend is Connected). Either side may go
/// Closing -> Closed at any time. Any other step is a protocol error.
public struct XenbusHandshake: Sendable {
    public enum Role: Sendable { case frontend, backend }

    public let role: Role
    public private(set) var local: XenbusState = .initialising
    public private(set) var peer: XenbusState = .unknown

    public init(role: Role) { self.role = role }

    /// Records the state the other side published.
    public mutating func observe(peer state: XenbusState) throws(MXError) {
        let allowed: Bool
        switch (peer, state) {
        case (_, .closing), (_, .closed): allowed = true
        case (.unknown, _): allowed = true
        case (.initialising, .initWait), (.initialising, .initialised): allowed = true
        case (.initWait, .connected), (.initialised, .connected): allowed = true
        default: allowed = state == peer
        }
        guard allowed else {
            throw MXError(.protocolError, "peer went from \(peer) to \(state), which Xen's handshake does not allow")
        }
        peer = state
    }

    /// Moves this side to `next`, if the handshake allows it now.
    public mutating func advance(to next: XenbusState) throws(MXError) {
        let ok: Bool
        switch (role, local, next) {
        case (_, .closed, _): ok = false
        case (_, _, .closing): ok = true
        case (_, .closing, .closed): ok = true
        case (.backend, .initialising, .initWait): ok = true
        case (.backend, .initWait, .connected): ok = peer == .initialised
        case (.frontend, .initialising, .initialised): ok = peer == .initWait
        case (.frontend, .initialised, .connected): ok = peer == .connected
        default: ok = false
        }
        guard ok else {
            throw MXError(.protocolError, "\(role) cannot go from \(local) to \(next) while the peer is \(peer)")
        }
        local = next
    }

    public var isConnected: Bool { local == .connected && peer == .connected }
}
