/// Which algorithm runs a collective call: a small table by operation, message size,
/// communicator size and layout (MPICH's tuning tables and Open MPI's coll/tuned decision
/// functions do the same). `MYRIXEN_COLL_<OP>=<algorithm>` forces one, for tests and
/// benchmarks (e.g. `MYRIXEN_COLL_ALLREDUCE=ring`); an unknown operation or algorithm name is
/// an error of `MPI.initialize()` that lists the valid ones. docs/collectives.md has the table.
@_spi(Testing) public enum CollectiveOperation: String, CaseIterable, Sendable {
    case barrier, bcast, reduce, allreduce, gather, scatter, allgather, alltoall, alltoallv
    case reduceScatter = "reduce_scatter"
    case scan, exscan

    /// The environment variable that forces this operation's algorithm.
    var variable: String { "MYRIXEN_COLL_" + rawValue.uppercased() }
}

@_spi(Testing) public enum CollectiveAlgorithm: String, CaseIterable, Sendable {
    case dissemination
    case binomial
    case scatterAllgather = "scatter_allgather"
    case recursiveDoubling = "recursive_doubling"
    case rabenseifner
    case ring
    case bruck
    case pairwise
    case linear
    case recursiveHalving = "recursive_halving"
    /// Two levels: within each host, then among one leader per host (HostLayout).
    case hostAware = "host_aware"
    /// Through the segment the members of one host share (IntraHost), for short messages.
    case sharedMemory = "shared_memory"
}

/// What the table decides on.
@_spi(Testing) public struct CallShape: CustomStringConvertible {
    /// Bytes of the whole message (bcast, allgather(v): the sum of every rank's block), or of
    /// one rank's block (gather, scatter, alltoall). Every member must see the same shape, so
    /// only what every member knows goes in.
    public var bytes: Int
    public var ranks: Int
    /// Which ranks share a host, once known (nil: plan flat).
    public var layout: HostLayout?
    /// Elements of the whole message (the reducing ones).
    public var elements: Int
    /// Whether the reduction operation is commutative (the reducing ones).
    public var commutative: Bool

    @_spi(Testing) public init(bytes: Int, ranks: Int, layout: HostLayout? = nil, elements: Int = 0, commutative: Bool = true) {
        self.bytes = bytes
        self.ranks = ranks
        self.layout = layout
        self.elements = elements
        self.commutative = commutative
    }

    public var description: String { "\(bytes) bytes on \(ranks) ranks, \(hosts) hosts\(commutative ? "" : ", non-commutative")" }

    /// Hosts the members are on (1 until the layout is known: plan as on one host).
    var hosts: Int { layout?.hosts.count ?? 1 }
    /// Several hosts, some with several ranks: two levels can save the wire.
    var isHierarchical: Bool { layout?.isHierarchical ?? false }
}

@_spi(Testing) public enum Selection {
    /// The algorithms each operation has, the default first.
    public static let algorithms: [CollectiveOperation: [CollectiveAlgorithm]] = [
        .barrier: [.dissemination, .hostAware, .sharedMemory],
        .bcast: [.binomial, .scatterAllgather, .hostAware, .sharedMemory],
        .reduce: [.binomial, .rabenseifner, .hostAware, .sharedMemory],
        .allreduce: [.recursiveDoubling, .rabenseifner, .ring, .hostAware, .sharedMemory],
        .reduceScatter: [.recursiveHalving, .pairwise],
        .scan: [.recursiveDoubling],
        .exscan: [.recursiveDoubling],
        .gather: [.linear, .binomial, .hostAware],
        .scatter: [.linear, .binomial],
        .allgather: [.recursiveDoubling, .bruck, .ring],
        .alltoall: [.pairwise, .bruck, .sharedMemory],
        .alltoallv: [.pairwise, .linear],
    ]

    /// The forced algorithm per operation, from the environment (read once).
    nonisolated(unsafe) public static var forced: [CollectiveOperation: CollectiveAlgorithm] = [:] {
        didSet { anyForced = !forced.isEmpty }
    }
    /// Whether anything is forced: the common case then skips the lookup on every call.
    nonisolated(unsafe) static var anyForced = false

    /// Reads every `MYRIXEN_COLL_*` variable: an unknown operation or algorithm is an error
    /// naming the valid ones.
    static func configure(from environment: [String: String]) throws(MPIError) {
        var out: [CollectiveOperation: CollectiveAlgorithm] = [:]
        for (name, value) in environment where name.hasPrefix("MYRIXEN_COLL_") {
            guard let op = CollectiveOperation.allCases.first(where: { $0.variable == name }) else {
                let valid = CollectiveOperation.allCases.map(\.variable).joined(separator: ", ")
                throw MPIError(.arg, "\(name) names no collective operation; valid variables: \(valid)")
            }
            let choices = algorithms[op] ?? []
            guard let alg = CollectiveAlgorithm(rawValue: value), choices.contains(alg) else {
                throw MPIError(.arg, "\(name)=\(value) is not an algorithm of \(op.rawValue); valid: \(choices.map(\.rawValue).joined(separator: ", "))")
            }
            out[op] = alg
        }
        forced = out
    }

    /// Whether a call of `op` (barrier, bcast, reduce, allreduce, alltoall) goes through the
    /// members' shared segment: on one host, at every size, unless another algorithm is
    /// forced. The choice never depends on the count, so ranks whose counts differ still
    /// meet on one path and fail there together. (Whether the segment exists is
    /// `Communicator.intraHost()`'s to say.)
    static func wantsSharedMemory(_ op: CollectiveOperation) -> Bool {
        if anyForced, let f = forced[op] { return f == .sharedMemory }
        return true
    }

    /// The algorithm for one call.
    public static func choose(_ op: CollectiveOperation, _ shape: CallShape) -> CollectiveAlgorithm {
        var chosen = (anyForced ? forced[op] : nil) ?? rule(op, shape)
        // Two levels need a layout (not yet learnt during the first call), shared memory
        // a segment and a short message (the public calls take that path before planning):
        // else the table meanwhile.
        if (chosen == .hostAware && shape.layout == nil) || chosen == .sharedMemory { chosen = rule(op, shape) }
        // Two levels keep rank order only when every host's ranks are consecutive.
        if chosen == .hostAware && !shape.commutative && !(shape.layout?.isConsecutive ?? false) {
            chosen = rule(op, CallShape(bytes: shape.bytes, ranks: shape.ranks, elements: shape.elements, commutative: false))
        }
        // Algorithms that combine out of rank order, for commutative operations only.
        guard !shape.commutative else { return chosen }
        switch (op, chosen) {
        case (.allreduce, .ring): return .recursiveDoubling
        case (.reduceScatter, .recursiveHalving): return .pairwise
        default: return chosen
        }
    }

    /// The table.
    static func rule(_ op: CollectiveOperation, _ shape: CallShape) -> CollectiveAlgorithm {
        var pof2 = 1
        while pof2 * 2 <= shape.ranks { pof2 *= 2 }
        switch op {
        case .barrier: return shape.isHierarchical ? .hostAware : .dissemination
        case .bcast:
            if shape.isHierarchical { return .hostAware }
            // One host: binomial measured faster at every size up to 16 MiB (3-8 ranks on 2
            // cores: a scatter and a ring copy as many bytes through memory as a tree, in more
            // rounds). Across hosts, as MPICH: scatter + allgather from 512 KiB and p > 2.
            return shape.hosts > 1 && shape.ranks > 2 && shape.bytes >= Threshold.bcastLong ? .scatterAllgather : .binomial
        case .reduce:
            if shape.isHierarchical && (shape.commutative || shape.layout!.isConsecutive) { return .hostAware }
            return shape.bytes < Threshold.reduceLong || shape.elements < pof2 ? .binomial : .rabenseifner
        case .allreduce:
            if shape.isHierarchical && (shape.commutative || shape.layout!.isConsecutive) { return .hostAware }
            let long = shape.ranks == 2 ? Threshold.allreduceLongPair : Threshold.allreduceLong
            if shape.bytes < long || shape.elements < shape.ranks { return .recursiveDoubling }
            return pof2 != shape.ranks && shape.bytes >= Threshold.allreduceRing && shape.commutative ? .ring : .rabenseifner
        case .reduceScatter:
            let long = shape.bytes >= Threshold.reduceScatterLong && pof2 != shape.ranks
            return long || !shape.commutative ? .pairwise : .recursiveHalving
        case .scan, .exscan: return .recursiveDoubling
        case .gather where shape.isHierarchical: return .hostAware
        case .gather, .scatter:
            // One host: linear measured faster at every size (4-16 ranks, 64 B to 1 MiB: each
            // round of a tree costs a wake-up). Across hosts, binomial for short blocks, as MPICH.
            return shape.hosts > 1 && shape.bytes < Threshold.rootedLong ? .binomial : .linear
        case .allgather:
            // Recursive doubling (exact for any p) measured faster than Bruck and the ring up to
            // about 4 MiB in all (4, 5, 8 ranks); the ring beyond.
            return shape.bytes < Threshold.allgatherLong ? .recursiveDoubling : .ring
        case .alltoall:
            // Bruck measured faster from 8 ranks up to 8 KiB blocks; pairwise otherwise.
            return shape.bytes <= Threshold.alltoallShort && shape.ranks >= 8 ? .bruck : .pairwise
        case .alltoallv: return .pairwise
        default: return algorithms[op]?.first ?? .linear
        }
    }
}

/// The sizes (bytes, see CallShape) where the table switches algorithm, measured with a
/// release build on the 2-vCPU machine (docs/collectives.md has the figures): with ranks
/// sharing cores every extra round costs a wake-up, so the round-saving algorithms win up to
/// larger sizes than in MPICH's tables.
enum Threshold {
    /// Reduce: binomial below, Rabenseifner from it.
    static let reduceLong = 1 << 20
    /// Allreduce with two ranks: recursive doubling below, Rabenseifner from it.
    static let allreduceLongPair = 16 << 10
    /// Allreduce with more ranks: recursive doubling below.
    static let allreduceLong = 256 << 10
    /// Allreduce: ring rather than Rabenseifner from here when p is no power of two.
    static let allreduceRing = 1 << 20
    /// Reduce-scatter: recursive halving below (all blocks); from it pairwise when p is no
    /// power of two.
    static let reduceScatterLong = 512 << 10
    static let bcastLong = 512 << 10
    static let rootedLong = 64 << 10
    static let allgatherLong = 4 << 20
    static let alltoallShort = 8 << 10
}
