#if canImport(Glibc)
import Glibc
#endif
import MyriXen
import PMI

/// A rank's start: PMI-1 says who it is; it opens an endpoint on this host's emulated board
/// with a key of its own, publishes the endpoint's address and key in the job's key-value
/// space, meets the others at a barrier, and connects to each peer the first time it needs it,
/// presenting the key that peer published.
public final class MXWorld {
    public let pmi: PMIClient
    public let context: MXContext
    public let endpoint: MXEndpoint
    public var rank: Int { pmi.rank }
    public var size: Int { pmi.size }
    /// The key this rank's endpoint was opened with: 32 random bits from the kernel's generator,
    /// new for every endpoint, known only through the job's key-value space (which only the
    /// job's ranks read: a socketpair, an authenticated agent, or the launcher's own channel).
    /// Nobody outside the job can compute it, whatever launcher started the job (swiftrun,
    /// hydra, srun, a singleton): it is not derived from anything a stranger sees, such as the
    /// KVS name `kvs_<pid>_0`.
    public let key: UInt32
    var addresses: [MXEndpointAddress?]

    /// A rank's card in the KVS: `mx-ep-<rank>` = `NIC/ENDPOINT/SESSION/KEY/HOST` (NIC as
    /// `NICAddressing.format`, session and key in hex, the host's name as its backend is named).
    public static let cardKeyPrefix = "mx-ep-"

    /// Bootstraps from the environment (PMI_FD, PMI_PORT + PMI_ID, or a singleton).
    public static func bootstrap() throws -> MXWorld {
        let pmi = try PMIClient.fromEnvironment()
        let key = UInt32.random(in: .min ... .max) // SystemRandomNumberGenerator: getrandom(2)
        let context = try MXContext()
        let endpoint = try context.openEndpoint(key: key)
        let world = MXWorld(pmi: pmi, context: context, endpoint: endpoint, key: key)
        // While the rank waits in any PMI call, its endpoint goes on acking and resending.
        pmi.whileWaiting = { fd in endpoint.progress(untilReadable: fd) }
        // The card: NIC id, endpoint, session, key, and the host's name (for messages about
        // that rank). The session tells a peer that connected here from an impostor.
        try pmi.put(cardKeyPrefix + String(pmi.rank),
                    NICAddressing.format(endpoint.nicID) + "/" + String(endpoint.endpointID) + "/" + String(endpoint.session, radix: 16)
                    + "/" + String(key, radix: 16) + "/" + context.hostname)
        try pmi.barrier()
        return world
    }

    init(pmi: PMIClient, context: MXContext, endpoint: MXEndpoint, key: UInt32) {
        self.pmi = pmi
        self.context = context
        self.endpoint = endpoint
        self.key = key
        addresses = Array(repeating: nil, count: pmi.size)
        hostNames = Array(repeating: nil, count: pmi.size)
    }

    var hostNames: [String?]

    /// The name of the host `rank` runs on, as its backend is named, once its address was
    /// looked up (nil before).
    public func hostName(of rank: Int) -> String? {
        rank >= 0 && rank < size ? hostNames[rank] : nil
    }

    /// The rank whose endpoint `address` names, among those looked up so far.
    public func rank(of address: MXEndpointAddress) -> Int? {
        addresses.firstIndex { $0?.nicID == address.nicID && $0?.endpointID == address.endpointID }
    }

    /// The address of `rank`'s endpoint, connecting on first use.
    public func address(of rank: Int) throws -> MXEndpointAddress {
        guard rank >= 0 && rank < size else { throw PMIError("rank \(rank) is not in 0..<\(size)") }
        if let a = addresses[rank] { return a }
        guard let card = try pmi.get(MXWorld.cardKeyPrefix + String(rank)) else {
            throw PMIError("rank \(rank) published no endpoint")
        }
        let parts = card.split(separator: "/", maxSplits: 4)
        let hex = parts.first?.split(separator: ":").joined() ?? ""
        guard parts.count == 5, let nic = UInt64(hex, radix: 16), let ep = Int(parts[1]),
              let session = UInt32(parts[2], radix: 16), let peerKey = UInt32(parts[3], radix: 16) else {
            throw PMIError("rank \(rank)'s endpoint card '\(card)' is malformed (expected NIC/ENDPOINT/SESSION/KEY/HOST)")
        }
        hostNames[rank] = String(parts[4])
        // A peer that connected here already (it sent first), in the session the card names,
        // needs no connect of our own: one toward a host just lost would wait out the connect
        // timeout for nothing (a peer already gone is given too, and fails at once with why).
        let a = try endpoint.attachedPeer(nicID: nic, endpointID: ep, session: session)
            ?? endpoint.connect(nicID: nic, endpointID: ep, key: peerKey)
        addresses[rank] = a
        return a
    }

    /// Drain, barrier, then PMI finalize, endpoint close and library finalize. The drain
    /// comes first: eager sends complete once queued, so frames toward other hosts may still
    /// need resending, and they are resent while the rank waits (in the drain, and in the PMI
    /// calls, which keep the endpoint progressing) until acked or their peer is declared lost.
    public func finalize() throws {
        if !endpoint.isClosed { try? endpoint.drain() }
        try pmi.barrier()
        try pmi.finalize()
        endpoint.close()
        context.finalize()
    }
}
