/// How the data path reaches a peer, chosen once, when the peer attaches: the pair's rings in
/// memory the backend granted (`Transport/ShmRing.swift`: a peer of this host), or a link of
/// the endpoint's wire (`Transport/WireTransport.swift`: a peer of another host). Each fork
/// between the two (reserve, publish, progress, pieces of a pull, a peer gone) switches on it:
/// an enum, not a protocol, so the hot path stays two inlined branches, without an existential
/// or reference counting.
enum PeerTransport {
    case ring
    case wire(link: Int32)

    /// A peer of this host (a pattern match, not the synthesized `==`, on the hot path).
    @inline(__always)
    var isRing: Bool {
        if case .ring = self { return true }
        return false
    }

    /// The wire link, for a peer of another host.
    @inline(__always)
    var link: Int32? {
        if case .wire(let l) = self { return l }
        return nil
    }
}
