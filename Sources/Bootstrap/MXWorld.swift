#if canImport(Glibc)
import Glibc
#endif
import MyriXen
import PMI

/// A rank's start: PMI-1 says who it is; it opens an endpoint on this host's emulated board,
/// publishes the endpoint's address in the job's key-value space, meets the others at a
/// barrier, and connects to each peer the first time it needs it.
public final class MXWorld {
    public let pmi: PMIClient
    public let context: MXContext
    public let endpoint: MXEndpoint
    public var rank: Int { pmi.rank }
    public var size: Int { pmi.size }
    /// Every rank of a job opens its endpoint with this key, derived from the job's name:
    /// endpoints of other jobs cannot connect.
    public let key: UInt32
    var addresses: [MXEndpointAddress?]

    public static let cardKeyPrefix = "mx-ep-"

    /// Bootstraps from the environment (PMI_FD, PMI_PORT + PMI_ID, or a singleton).
    public static func bootstrap() throws -> MXWorld {
        let pmi = try PMIClient.fromEnvironment()
        var h: UInt32 = 2_166_136_261
        for b in pmi.kvsname.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        let context = try MXContext()
        let endpoint = try context.openEndpoint(key: h)
        let world = MXWorld(pmi: pmi, context: context, endpoint: endpoint, key: h)
        // While the rank waits in any PMI call, its endpoint goes on acking and resending.
        pmi.whileWaiting = { fd in endpoint.progress(untilReadable: fd) }
        // The card: NIC id, endpoint, and the host's name (for messages about that rank).
        try pmi.put(cardKeyPrefix + String(pmi.rank),
                    NICAddressing.format(endpoint.nicID) + "/" + String(endpoint.endpointID) + "/" + context.hostname)
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
        let parts = card.split(separator: "/", maxSplits: 2)
        let hex = parts.first?.split(separator: ":").joined() ?? ""
        guard parts.count == 3, let nic = UInt64(hex, radix: 16), let ep = Int(parts[1]) else {
            throw PMIError("rank \(rank)'s endpoint card '\(card)' is malformed")
        }
        hostNames[rank] = String(parts[2])
        // A peer that connected here already (it sent first) needs no connect of our own: one
        // toward a host just lost would wait out the connect timeout for nothing.
        let a = try endpoint.attachedPeer(nicID: nic, endpointID: ep) ?? endpoint.connect(nicID: nic, endpointID: ep, key: key)
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
