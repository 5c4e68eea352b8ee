/// Every failure of the channel layer is an `MXError`: a code a program can switch on and a
/// message that says what was wrong and, where there is one, the fix.
public struct MXError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        case notInitialized = "not initialized"
        case closedEndpoint = "closed endpoint"
        case invalidBoard = "invalid board"
        case invalidEndpoint = "invalid endpoint"
        case noFreeEndpoint = "no free endpoint"
        case badConnectionKey = "bad connection key"
        case badMatchMask = "bad match mask"
        case unknownNICID = "unknown NIC id"
        case unknownHost = "unknown host"
        case regionTableFull = "region table full"
        case requestCompleted = "request already completed"
        case invalidRequest = "invalid request"
        case timeout = "timeout"
        case tooManySegments = "too many segments"
        case badParameter = "bad parameter"
        case backendUnavailable = "backend unavailable"
        case backendDied = "backend died"
        case peerClosed = "peer closed"
        case tooManyPeers = "too many peers"
        case pullRefused = "pull refused"
        case accessDenied = "access denied"
        case revokedGrant = "revoked grant"
        case protocolError = "protocol error"
        case system = "system error"
        case tooManyConnections = "too many connections"
    }

    public let code: Code
    public let message: String
    /// The peer a `peerClosed` error is about, when one is.
    public let peer: MXEndpointAddress?

    public init(_ code: Code, _ message: String, peer: MXEndpointAddress? = nil) {
        self.code = code
        self.message = message
        self.peer = peer
    }

    public var description: String { "MyriXen: \(code.rawValue): \(message)" }

    /// Two errors are equal when their codes are: messages carry detail, not identity.
    public static func == (a: MXError, b: MXError) -> Bool { a.code == b.code }
}
