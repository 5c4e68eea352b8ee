import MyriXen

/// Which members of a communicator share a host (memory through their backend), for the
/// host-aware algorithms: inside a host first, across hosts among one leader each, then back.
///
/// The job's layout is learnt once, by the first collective on the world communicator with
/// more than one rank (every rank makes that call: any other communicator is made by a
/// collective over the world first): an allgather of every rank's host name. Each
/// communicator's layout follows from it without communication.
struct HostLayout {
    /// The communicator's ranks on each host, in rank order; hosts in the order of their
    /// lowest rank.
    let hosts: [[Int]]
    /// Each rank's host (an index into `hosts`).
    let hostOf: [Int]
    /// Whether every host's ranks are consecutive ranks (so combining per host, then across
    /// hosts in host order, keeps rank order: a non-commutative operation may go host-aware).
    let isConsecutive: Bool

    init(hostOfMember: [Int]) {
        var index: [Int: Int] = [:]
        var hosts: [[Int]] = []
        var hostOf: [Int] = []
        for (r, h) in hostOfMember.enumerated() {
            let k = index[h] ?? { index[h] = hosts.count; hosts.append([]); return hosts.count - 1 }()
            hosts[k].append(r)
            hostOf.append(k)
        }
        self.hosts = hosts
        self.hostOf = hostOf
        isConsecutive = hosts.allSatisfy { $0.last! - $0.first! == $0.count - 1 }
    }

    /// Whether two levels can gain anything: several hosts, and some host with several ranks.
    var isHierarchical: Bool { hosts.count > 1 && hosts.count < hostOf.count }

    /// One rank per host, in host order: the lowest, but `root` on its own host.
    func leaders(root: Int = -1) -> [Int] {
        hosts.enumerated().map { k, ranks in root >= 0 && hostOf[root] == k ? root : ranks[0] }
    }
}

extension CollectiveEngine {
    enum LayoutState { case unknown, learning, known }
}

extension Communicator {
    /// This communicator's host layout, once the job's is known (nil before, and while it is
    /// being learnt: the collectives then use their flat algorithms).
    var layout: HostLayout? {
        if let l = hostLayoutCache { return l }
        guard engine.layoutState == .known else { return nil }
        let l = HostLayout(hostOfMember: members.map { engine.hostOfWorldRank[$0] })
        hostLayoutCache = l
        return l
    }

    /// Learns the job's layout at the first collective of the world communicator (see
    /// `HostLayout`). Cheap after that: one comparison.
    @inline(__always)
    func learnLayoutIfNeeded() throws(MPIError) {
        if engine.layoutState == .unknown && context == contexts.world && size > 1 { try learnLayout() }
    }

    func learnLayout() throws(MPIError) {
        engine.layoutState = .learning
        do {
            let names = try allgatherv(Array(Communicator.hostName.utf8))
            var index: [[UInt8]: Int] = [:]
            engine.hostOfWorldRank = names.map { n in index[n] ?? { index[n] = index.count; return index.count - 1 }() }
            engine.layoutState = .known
        } catch {
            engine.layoutState = .unknown
            throw error
        }
    }

    /// The name of the host this process shares memory on: swiftrun's name for it (an
    /// emulated VM, an ssh host), else the kernel's.
    static var hostName: String { getenvString("SWIFTRUN_HOST") ?? BackendLocation.localHostName() }
}
