/// The address of a peer endpoint, as `connect` returns it and a receive's status names the
/// sender. Valid on the endpoint that produced it.
public struct MXEndpointAddress: Hashable, Sendable, CustomStringConvertible {
    public let nicID: UInt64
    public let endpointID: Int
    public let session: UInt32
    /// The peer's slot on the local endpoint.
    let peerIndex: Int32

    public var description: String { "\(NICAddressing.format(nicID))/ep\(endpointID)" }
}

/// Who can send the message a receive or probe waits for. MX itself matches on match info
/// alone, so a receive waits whatever happens to peers; a caller that knows more says so, and
/// the receive fails with `peerClosed` instead of waiting forever once that sender cannot come.
public enum MXSender: Sendable {
    /// Anyone; nothing that happens to peers ends the wait (MX's own semantics).
    case unknown
    /// Only this peer: fails once it went away (closed, died, or its host declared lost)
    /// without having sent a matching message.
    case peer(MXEndpointAddress)
    /// Any peer: fails if the host of any peer of this endpoint is declared lost while it
    /// waits (the message might have been coming from there).
    case anyPeer
}

/// A pending operation. Completing it (test or wait returning its status) frees it; using it
/// again then fails with `requestCompleted`.
public struct MXRequest: Hashable, Sendable {
    let index: Int32
    let generation: UInt32
}

/// One scatter/gather segment.
public struct MXSegment {
    public var base: UnsafeMutableRawPointer?
    public var length: Int

    public init(_ base: UnsafeMutableRawPointer?, length: Int) {
        self.base = base
        self.length = length
    }
    public init(_ buffer: UnsafeMutableRawBufferPointer) {
        base = buffer.baseAddress
        length = buffer.count
    }
    public init(_ buffer: UnsafeRawBufferPointer) {
        base = UnsafeMutableRawPointer(mutating: buffer.baseAddress)
        length = buffer.count
    }
}

/// The outcome of a completed request.
public struct MXStatus: Sendable, Equatable {
    public enum Kind: UInt8, Sendable { case send = 1, receive = 2, connect = 3 }
    public var kind: Kind
    /// The sender (receives) or the destination (sends).
    public var source: MXEndpointAddress?
    public var matchInfo: UInt64
    /// Length of the message as sent.
    public var messageLength: Int
    /// Bytes delivered: less than `messageLength` when the receive buffer was shorter.
    public var transferredLength: Int
    public var context: UInt64
    public var isCancelled: Bool
    public var isTruncated: Bool { transferredLength < messageLength }
}

/// The ways a rendezvous message between two endpoints of one host can move once it matched.
/// Which is fastest depends on the machine (how fast its cross-memory attach is against
/// memcpy, what a cache line costs between the two cores), so by default the receiver
/// measures them and takes the fastest, per peer and size (docs/myrixen.md).
public enum MXLocalPath: Sendable, Equatable, CustomStringConvertible {
    /// Per peer and size class, the way that measured fastest lately; the others are tried
    /// again now and then.
    case measured
    /// The receiver pulls it all by cross-memory attach, alone: one copy, one CPU.
    case pull
    /// The receiver pulls the front half while the sender writes the back half straight into
    /// the receive buffer: one copy, shared by two CPUs.
    case split
    /// The sender copies pieces into the pair ring while the receiver copies the one before
    /// out, for messages up to `upTo` bytes (larger ones are pulled): two copies, overlapped.
    case pieces(upTo: Int)

    /// `measured`, `pull`, `split`, `pieces` (every size) or `pieces:BYTES`.
    public init?(parsing text: String) {
        switch text {
        case "measured": self = .measured
        case "pull": self = .pull
        case "split": self = .split
        case "pieces": self = .pieces(upTo: Int.max)
        default:
            guard text.hasPrefix("pieces:"), let n = Int(text.dropFirst(7)), n >= 0 else { return nil }
            self = .pieces(upTo: n)
        }
    }

    public var description: String {
        switch self {
        case .measured: "measured"
        case .pull: "pull"
        case .split: "split"
        case .pieces(let n): n == Int.max ? "pieces" : "pieces:\(n)"
        }
    }

    /// What the values of `MYRIXEN_LOCAL_PATH` may be.
    public static let valuesInWords = "measured, pull, split, pieces or pieces:BYTES"

    /// `MYRIXEN_LOCAL_PATH`, when set to a valid value (an invalid one fails the endpoint's open).
    public static var environment: MXLocalPath? {
        guard let v = getenv(MXDefaults.localPathEnvironment) else { return nil }
        return MXLocalPath(parsing: String(cString: v))
    }

    /// Measured when the ranks of this host each have a CPU; pulled when they share CPUs (the
    /// split and the pieces need both sides running at once: on shared CPUs they take turns,
    /// with a switch per piece).
    public static var defaultForThisHost: MXLocalPath {
        MXEndpointOptions.isOversubscribed || MXEndpointOptions.hostCPUs < 2 ? .pull : .measured
    }
}

/// Options of an endpoint.
public struct MXEndpointOptions: Sendable {
    /// Largest message sent eagerly between endpoints of this host (MX: 4 KiB).
    public var rendezvousThreshold: Int
    /// How long a waiter polls flat out before it starts yielding the CPU between polls:
    /// 50 µs, or none when this host runs more ranks than this process may use CPUs (a rank
    /// spinning there holds the CPU the rank it waits for needs).
    public var spinMicroseconds: Int = MXEndpointOptions.isOversubscribed ? 0 : 50
    /// How long a waiter polls (yielding between polls, so oversubscribed ranks still run)
    /// before it sleeps on its event channel and costs no CPU.
    public var sleepAfterMicroseconds: Int = 1000
    /// How rendezvous messages between endpoints of this host move (`MXLocalPath`): by
    /// default measured per peer and size when the ranks of this host each have a CPU, pulled
    /// alone by the receiver when they share CPUs (the other ways need both sides running at
    /// once); `MYRIXEN_LOCAL_PATH` overrides.
    public var localPath: MXLocalPath = MXLocalPath.environment ?? .defaultForThisHost

    /// Whether the process manager placed more ranks on this host (`MPI_LOCALNRANKS`, set by
    /// swiftrun and by hydra) than there are CPUs for them: the ones swiftrun says the job may
    /// use there (`MYRIXEN_HOST_CPUS`: a rank bound to one core still has a core to itself
    /// when the ranks fit), else those this process may run on.
    public static let isOversubscribed: Bool = {
        guard let ranks = getenvInt("MPI_LOCALNRANKS") else { return false }
        return ranks > hostCPUs
    }()

    /// The CPUs the ranks of this host share: `MYRIXEN_HOST_CPUS` (swiftrun's affinity, before
    /// it bound each rank to its part of it), else those this process may run on.
    public static let hostCPUs: Int = getenvInt(MXDefaults.hostCPUsEnvironment) ?? Int(cmx_usable_cpus())

    public init(rendezvousThreshold: Int? = nil) {
        if let t = rendezvousThreshold {
            self.rendezvousThreshold = t
        } else if let e = getenvInt(MXDefaults.thresholdEnvironment) {
            self.rendezvousThreshold = e
        } else {
            self.rendezvousThreshold = MXLimits.rendezvousThresholdLocal
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

func getenvInt(_ name: String) -> Int? {
    guard let v = getenv(name) else { return nil }
    return Int(String(cString: v))
}

/// What `MXEndpoint.wait(until:)` waits for: `holds` is asked after every round of progress
/// (and may advance work of its own, as a layer above the endpoint does).
public protocol MXWaitCondition {
    func holds(_ endpoint: MXEndpoint) -> Bool
}
