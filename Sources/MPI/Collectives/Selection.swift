/// Which algorithm runs a collective call: a small table by operation, message size,
/// communicator size and layout (MPICH's tuning tables and Open MPI's coll/tuned decision
/// functions do the same). `MYRIXEN_COLL_<OP>=<algorithm>` forces one, for tests and
/// benchmarks (e.g. `MYRIXEN_COLL_ALLREDUCE=ring`); an unknown operation or algorithm name is
/// an error of `MPI.initialize()` that lists the valid ones. docs/collectives.md has the table.
enum CollectiveOperation: String, CaseIterable, Sendable {
    case barrier, bcast, reduce, allreduce, gather, scatter, allgather, alltoall, alltoallv
    case reduceScatter = "reduce_scatter"
    case scan, exscan

    /// The environment variable that forces this operation's algorithm.
    var variable: String { "MYRIXEN_COLL_" + rawValue.uppercased() }
}

enum CollectiveAlgorithm: String, CaseIterable, Sendable {
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
}

/// What the table decides on.
struct CallShape {
    /// Bytes of the whole message (bcast, allgather(v): the sum of every rank's block), or of
    /// one rank's block (gather, scatter, alltoall). Every member must see the same shape, so
    /// only what every member knows goes in.
    var bytes: Int
    var ranks: Int
    /// Hosts the members are on (1: every message goes through shared memory).
    var hosts = 1
}

enum Selection {
    /// The algorithms each operation has, the default first.
    static let algorithms: [CollectiveOperation: [CollectiveAlgorithm]] = [
        .barrier: [.dissemination],
        .bcast: [.binomial, .scatterAllgather],
        .allreduce: [.recursiveDoubling],
        .gather: [.linear, .binomial],
        .scatter: [.linear, .binomial],
        .allgather: [.recursiveDoubling, .bruck, .ring],
        .alltoall: [.pairwise, .bruck],
        .alltoallv: [.pairwise, .linear],
    ]

    /// The forced algorithm per operation, from the environment (read once).
    nonisolated(unsafe) static var forced: [CollectiveOperation: CollectiveAlgorithm] = [:]

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

    /// The algorithm for one call.
    static func choose(_ op: CollectiveOperation, _ shape: CallShape) -> CollectiveAlgorithm {
        if let f = forced[op] { return f }
        switch op {
        case .barrier: return .dissemination
        case .bcast:
            // One host: binomial measured faster at every size up to 16 MiB (3-8 ranks on 2
            // cores: a scatter and a ring copy as many bytes through memory as a tree, in more
            // rounds). Across hosts, as MPICH: scatter + allgather from 512 KiB and p > 2.
            return shape.hosts > 1 && shape.ranks > 2 && shape.bytes >= Threshold.bcastLong ? .scatterAllgather : .binomial
        case .allreduce: return .recursiveDoubling
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

/// The sizes (bytes, see CallShape) where the table switches algorithm; docs/collectives.md
/// has how they were measured.
enum Threshold {
    static let bcastLong = 512 << 10
    static let rootedLong = 64 << 10
    static let allgatherLong = 4 << 20
    static let alltoallShort = 8 << 10
}
