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
    /// Largest rendezvous message between endpoints of this host moved by copy, in pieces
    /// through the pair ring (the sender copies one in while the receiver copies the one
    /// before out); larger ones are pulled by cross-memory attach, one copy by the receiver
    /// alone. By default every size when the ranks of this host each have a CPU (both sides
    /// copy at once), none when they share CPUs (the two copies would take turns, with a
    /// switch per ring's worth); `MYRIXEN_COPY_LIMIT` (bytes) overrides.
    public var localCopyLimit: Int = getenvInt(MXDefaults.copyLimitEnvironment)
        ?? (MXEndpointOptions.isOversubscribed || MXEndpointOptions.hostCPUs < 2 ? 0 : Int.max)

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
