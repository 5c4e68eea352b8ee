/// Which algorithm runs a collective call: a small table by operation, message size,
/// communicator size and layout (MPICH's tuning tables and Open MPI's coll/tuned decision
/// functions do the same). `MYRIXEN_COLL_<OP>=<algorithm>` forces one, for tests and
/// benchmarks (e.g. `MYRIXEN_COLL_ALLREDUCE=ring`); an unknown operation or algorithm name is
/// an error of `MPI.initialize()` that lists the valid ones. docs/collectives.md has the table.
enum CollectiveOperation: String, CaseIterable, Sendable {
    case barrier, bcast, reduce, allreduce, gather, scatter, allgather, alltoall
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
    /// Bytes of the whole message (per rank's contribution for the gathering ones).
    var bytes: Int
    var ranks: Int
}

enum Selection {
    /// The algorithms each operation has, the default first.
    static let algorithms: [CollectiveOperation: [CollectiveAlgorithm]] = [
        .barrier: [.dissemination],
        .bcast: [.binomial],
        .allreduce: [.recursiveDoubling],
        .allgather: [.ring],
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
        case .bcast: return .binomial
        case .allreduce: return .recursiveDoubling
        case .allgather: return .ring
        default: return algorithms[op]?.first ?? .linear
        }
    }
}
