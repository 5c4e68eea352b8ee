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
}

enum Selection {
    /// The algorithms each operation has, the default first.
    static let algorithms: [CollectiveOperation: [CollectiveAlgorithm]] = [
        .barrier: [.dissemination],
        .bcast: [.binomial, .scatterAllgather],
        .allreduce: [.recursiveDoubling],
        .gather: [.binomial, .linear],
        .scatter: [.binomial, .linear],
        .allgather: [.recursiveDoubling, .bruck, .ring],
        .alltoall: [.bruck, .pairwise],
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
            // MPICH switches at 12 KiB and 8 ranks (and 512 KiB for non-powers of two).
            return shape.ranks > 2 && shape.bytes >= Threshold.bcastLong ? .scatterAllgather : .binomial
        case .allreduce: return .recursiveDoubling
        case .gather: return shape.bytes >= Threshold.gatherLong ? .linear : .binomial
        case .scatter: return shape.bytes >= Threshold.scatterLong ? .linear : .binomial
        case .allgather:
            // As MPICH: recursive doubling for short powers of two, Bruck for short others.
            let pof2 = shape.ranks & (shape.ranks - 1) == 0
            if pof2 && shape.bytes < Threshold.allgatherLong { return .recursiveDoubling }
            if !pof2 && shape.bytes < Threshold.allgatherShort { return .bruck }
            return .ring
        case .alltoall:
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
    static let gatherLong = 64 << 10
    static let scatterLong = 64 << 10
    static let allgatherShort = 80 << 10
    static let allgatherLong = 512 << 10
    static let alltoallShort = 256
}
