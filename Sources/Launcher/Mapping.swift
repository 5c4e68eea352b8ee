import MyriXen
import Topology

/// Where one rank runs.
public struct RankPlacement: Equatable, Sendable {
    public let rank: Int
    public let host: Int
    public let app: Int
    public var localRank: Int
    public var localSize: Int
}

/// Lays ranks out over hosts. `slot` (and `core`, `socket`, `numa`, which differ only in
/// binding) fills each host up to its slots before the next, in blocks; `node` deals ranks
/// round robin, one per host in turn. `-ppn` makes every host's share that many. More ranks
/// than slots is an error unless oversubscribing, which then wraps around. No job has more
/// than `MXLimits.maxRanksPerJob` ranks or hosts, no host more than `MXLimits.maxRanksPerHost`
/// ranks or slots: bad counts are errors before anything is added up or allocated.
public enum Mapper {
    /// The limits in words, for every error that names them.
    public static let perJobLimit = "the \(MXLimits.maxRanksPerJob) ranks a job can have"
    public static let perHostLimit = "the \(MXLimits.maxRanksPerHost) ranks a host can hold (an endpoint each: \(MXLimits.maxBoards) boards of \(MXLimits.maxEndpointsPerBoard))"

    public static func map(apps: [AppSpec], hosts: [HostEntry], perNode: Int?, mapBy: MapBy,
                           oversubscribe: Bool, source: String, defaultCount: Int) throws(LaunchError) -> [RankPlacement] {
        guard !hosts.isEmpty else { throw LaunchError("no hosts to run on") }
        // Every count is bounded before anything is added up or allocated.
        guard hosts.count <= MXLimits.maxRanksPerJob else {
            throw LaunchError("\(source) lists \(hosts.count) hosts, more than \(perJobLimit); list fewer")
        }
        for h in hosts {
            for (what, n) in [("slots", h.slots), ("max_slots", h.maxSlots)] {
                if let n, n < 1 || n > MXLimits.maxRanksPerHost {
                    throw LaunchError("\(h.name) in \(source): \(what)=\(n) " + (n < 1 ? "must be at least 1" : "is more than \(perHostLimit); lower it"))
                }
            }
        }
        if let p = perNode, p < 1 || p > MXLimits.maxRanksPerHost {
            throw LaunchError("-ppn \(p) " + (p < 1 ? "must be at least 1" : "is more than \(perHostLimit); lower -ppn"))
        }
        let finiteSlots = hosts.allSatisfy { $0.slots != nil } ? hosts.reduce(0) { $0 + $1.slots! } : nil
        for app in apps {
            if let n = app.count, n < 1 || n > MXLimits.maxRanksPerJob {
                throw LaunchError("-n \(n) " + (n < 1 ? "must be at least 1" : "is more than \(perJobLimit); lower -n"))
            }
        }
        let counts = apps.map { $0.count ?? finiteSlots ?? defaultCount }
        let total = counts.reduce(0) { $0 + min($1, MXLimits.maxRanksPerJob + 1) }
        guard total > 0 else { throw LaunchError("no ranks to start") }
        guard total <= MXLimits.maxRanksPerJob else {
            let fromSlots = apps.contains { $0.count == nil } && finiteSlots != nil
            throw LaunchError(fromSlots ? "the slots of \(source) add up to \(finiteSlots!) ranks, more than \(perJobLimit); give -n"
                                        : "\(total) ranks is more than \(perJobLimit); lower -n")
        }
        let capacity: [Int?] = hosts.map { h in perNode ?? h.slots }
        if !oversubscribe {
            if let p = perNode {
                for h in hosts where h.slots != nil && p > (h.maxSlots ?? h.slots!) {
                    throw LaunchError("-ppn \(p) is more than the \(h.slots!) slots of \(h.name) in \(source); use --oversubscribe")
                }
            }
            if capacity.allSatisfy({ $0 != nil }) {
                let offered = capacity.reduce(0) { $0 + $1! }
                if total > offered {
                    throw LaunchError("\(total) ranks but \(source) offers \(offered) slot\(offered == 1 ? "" : "s"); add hosts, lower -n, or use --oversubscribe")
                }
            }
        }
        var hostOfRank: [Int] = []
        hostOfRank.reserveCapacity(total)
        switch mapBy {
        case .node:
            // Passes over the hosts with room, one rank each; a host that fills up leaves the
            // next pass. When none has room (oversubscribing), any host in turn.
            var used = [Int](repeating: 0, count: hosts.count)
            var open = hosts.indices.filter { capacity[$0].map { $0 > 0 } ?? true }
            var last = -1
            while hostOfRank.count < total && !open.isEmpty {
                for h in open where hostOfRank.count < total {
                    hostOfRank.append(h)
                    used[h] += 1
                    last = h
                }
                open.removeAll { h in capacity[h].map { used[h] >= $0 } ?? false }
            }
            var h = last + 1
            while hostOfRank.count < total {
                hostOfRank.append(h % hosts.count)
                h += 1
            }
        case .slot, .core, .socket, .numa:
            // Blocks. Oversubscribed, every host's share grows in proportion to its capacity.
            var share: [Int] = capacity.map { $0 ?? total }
            if capacity.allSatisfy({ $0 != nil }) {
                let offered = capacity.reduce(0) { $0 + $1! }
                if total > offered {
                    share = capacity.map { $0! * total / offered }
                    var extra = total - share.reduce(0, +)
                    var k = 0
                    while extra > 0 { share[k] += 1; extra -= 1; k = (k + 1) % hosts.count }
                }
            }
            for k in 0..<hosts.count where hostOfRank.count < total {
                let n = min(share[k], total - hostOfRank.count)
                hostOfRank += Array(repeating: k, count: n)
            }
        }
        var placements: [RankPlacement] = []
        var appOfRank: [Int] = []
        for (a, n) in counts.enumerated() { appOfRank += Array(repeating: a, count: n) }
        var local = [Int](repeating: 0, count: hosts.count)
        for r in 0..<total {
            let h = hostOfRank[r]
            placements.append(RankPlacement(rank: r, host: h, app: appOfRank[r], localRank: local[h], localSize: 0))
            local[h] += 1
        }
        if let k = local.indices.first(where: { local[$0] > MXLimits.maxRanksPerHost }) {
            throw LaunchError("\(local[k]) ranks on \(hosts[k].name) is more than \(perHostLimit); add hosts or lower -n")
        }
        for i in placements.indices { placements[i].localSize = local[placements[i].host] }
        return placements
    }

    /// MPICH's `PMI_process_mapping`: `(vector,(start,nodes,ranks),...)`. Each tuple gives
    /// `ranks` consecutive ranks to each of `nodes` consecutive hosts from `start`; the tuples
    /// describe the layout rank by rank (MPICH repeats the vector when ranks remain, so a
    /// periodic layout such as round robin is written once). Never an empty vector: MPICH's
    /// parser would loop forever on it.
    public static func processMapping(_ placements: [RankPlacement]) -> String {
        var runs: [(host: Int, count: Int)] = []
        for p in placements {
            if let last = runs.last, last.host == p.host { runs[runs.count - 1].count += 1 } else { runs.append((p.host, 1)) }
        }
        var tuples: [(start: Int, nodes: Int, ppn: Int)] = []
        for r in runs {
            if let last = tuples.last, last.ppn == r.count, last.start + last.nodes == r.host {
                tuples[tuples.count - 1].nodes += 1
            } else {
                tuples.append((r.host, 1, r.count))
            }
        }
        // The shortest prefix that, repeated, gives every tuple.
        var period = tuples.count
        for p in 1...max(1, tuples.count) where tuples.count % p == 0 {
            if (0..<tuples.count).allSatisfy({ tuples[$0] == tuples[$0 % p] }) { period = p; break }
        }
        return "(vector," + tuples.prefix(period).map { "(\($0.start),\($0.nodes),\($0.ppn))" }.joined(separator: ",") + ")"
    }
}

/// Where one local rank is bound: the PUs (operating-system numbers) and the words
/// `--report-bindings` prints.
public struct Binding: Equatable, Sendable {
    public let processingUnits: [Int]
    public let description: String
    public var isBound: Bool { !processingUnits.isEmpty }

    public static let unbound = Binding(processingUnits: [], description: "not bound")
}

/// Binding of the ranks of one host, from its real topology.
public enum Binder {
    /// `bindTo` nil: bind to cores when the ranks fit the cores, else leave them unbound.
    public static func plan(localRanks: Int, mapBy: MapBy, bindTo: BindTo?, topology: HostTopology) -> [Binding] {
        let cores = topology.cores
        guard !cores.isEmpty else { return Array(repeating: .unbound, count: localRanks) }
        let pus = cores.flatMap(\.processingUnits)
        let policy = bindTo ?? (localRanks <= cores.count ? .core : .none)
        let oversubscribed: Bool
        switch policy {
        case .none: return Array(repeating: .unbound, count: localRanks)
        case .hwthread: oversubscribed = localRanks > pus.count
        case .core: oversubscribed = localRanks > cores.count
        case .socket: oversubscribed = localRanks > cores.count
        case .numa: oversubscribed = localRanks > cores.count
        }
        if oversubscribed {
            return Array(repeating: Binding(processingUnits: [], description: "not bound (oversubscribed)"), count: localRanks)
        }
        // The order in which ranks take cores: by core, or spread over packages / NUMA nodes.
        let order: [HostTopology.Core]
        switch mapBy {
        case .socket: order = spread(cores, by: \.package)
        case .numa: order = spread(cores, by: \.numaNode)
        default: order = cores
        }
        return (0..<localRanks).map { i in
            switch policy {
            case .hwthread:
                let pu = pus[i]
                return Binding(processingUnits: [pu], description: "hwthread (PU \(pu))")
            case .core:
                let c = order[i]
                return Binding(processingUnits: c.processingUnits,
                               description: "core \(c.index) (PU \(c.processingUnits.map(String.init).joined(separator: ",")))")
            case .socket:
                let package = order[i].package
                let set = cores.filter { $0.package == package }.flatMap(\.processingUnits)
                return Binding(processingUnits: set, description: "socket \(package) (PU \(set.map(String.init).joined(separator: ",")))")
            case .numa:
                let node = order[i].numaNode
                let set = cores.filter { $0.numaNode == node }.flatMap(\.processingUnits)
                return Binding(processingUnits: set, description: "NUMA node \(node) (PU \(set.map(String.init).joined(separator: ",")))")
            case .none:
                return .unbound
            }
        }
    }

    /// Cores dealt round robin across the groups `key` forms.
    static func spread(_ cores: [HostTopology.Core], by key: KeyPath<HostTopology.Core, Int>) -> [HostTopology.Core] {
        var groups: [Int: [HostTopology.Core]] = [:]
        for c in cores { groups[c[keyPath: key], default: []].append(c) }
        let keys = groups.keys.sorted()
        var out: [HostTopology.Core] = []
        var i = 0
        while out.count < cores.count {
            for k in keys where i < groups[k]!.count { out.append(groups[k]![i]) }
            i += 1
        }
        return out
    }
}
