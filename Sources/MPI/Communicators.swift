import Bootstrap
import MyriXen

/// Context ids: every communicator has a pair, an even one for its point-to-point traffic and
/// the odd one next to it for the library's own collective traffic, so neither ever matches
/// the other (nor another communicator's). A new communicator's pair is agreed on by all its
/// members: the lowest pair free on every one of them.
final class ContextIDs {
    var used: Set<UInt16> = [0, 1, 2, 3]
    let world: UInt16 = 0
    let selfComm: UInt16 = 2
    static let pairs = 32768

    /// Free pairs as a bit mask (bit k: pair k is free here).
    func freeMask() -> [UInt64] {
        var mask = [UInt64](repeating: .max, count: ContextIDs.pairs / 64)
        for c in used where c % 2 == 0 { mask[Int(c / 2) / 64] &= ~(1 << UInt64(Int(c / 2) % 64)) }
        return mask
    }

    static func lowest(_ mask: [UInt64]) -> UInt16? {
        for (w, bits) in mask.enumerated() where bits != 0 { return UInt16((w * 64 + bits.trailingZeroBitCount) * 2) }
        return nil
    }

    func take(_ c: UInt16) { used.insert(c); used.insert(c + 1) }
    func release(_ c: UInt16) { if c > 3 { used.remove(c); used.remove(c + 1) } }
}

/// A group of processes (MPI_Group): world ranks in order.
public struct Group: Equatable, Sendable {
    /// The members' world ranks, by rank in the group.
    public let members: [Int]
    public var size: Int { members.count }

    public init(worldRanks: [Int]) { members = worldRanks }

    public enum Comparison: Sendable { case identical, similar, unequal }

    /// `ranks` (ranks in this group), in that order (MPI_Group_incl).
    public func including(_ ranks: [Int]) throws(MPIError) -> Group {
        for r in ranks where r < 0 || r >= size { throw MPIError(.rank, "rank \(r) is not in a group of \(size)") }
        guard Set(ranks).count == ranks.count else { throw MPIError(.rank, "a rank is named twice in \(ranks)") }
        return Group(worldRanks: ranks.map { members[$0] })
    }

    /// All but `ranks` (MPI_Group_excl).
    public func excluding(_ ranks: [Int]) throws(MPIError) -> Group {
        for r in ranks where r < 0 || r >= size { throw MPIError(.rank, "rank \(r) is not in a group of \(size)") }
        let out = Set(ranks)
        return Group(worldRanks: members.enumerated().filter { !out.contains($0.offset) }.map(\.element))
    }

    /// Ranks given as (first, last, stride) triples (MPI_Group_range_incl).
    public func including(ranges: [(first: Int, last: Int, stride: Int)]) throws(MPIError) -> Group {
        try including(try Group.expand(ranges))
    }

    /// All but the ranks of the (first, last, stride) triples (MPI_Group_range_excl).
    public func excluding(ranges: [(first: Int, last: Int, stride: Int)]) throws(MPIError) -> Group {
        try excluding(try Group.expand(ranges))
    }

    static func expand(_ ranges: [(first: Int, last: Int, stride: Int)]) throws(MPIError) -> [Int] {
        var out: [Int] = []
        for r in ranges {
            guard r.stride != 0 else { throw MPIError(.other, "a range stride of 0") }
            out += Array(stride(from: r.first, through: r.last, by: r.stride))
        }
        return out
    }

    public func union(_ other: Group) -> Group {
        Group(worldRanks: members + other.members.filter { !members.contains($0) })
    }
    public func intersection(_ other: Group) -> Group { Group(worldRanks: members.filter(other.members.contains)) }
    public func difference(_ other: Group) -> Group { Group(worldRanks: members.filter { !other.members.contains($0) }) }

    /// Ranks of this group as ranks in `other` (nil: not a member there) (MPI_Group_translate_ranks).
    public func translate(_ ranks: [Int], to other: Group) throws(MPIError) -> [Int?] {
        var out: [Int?] = []
        for r in ranks {
            guard r >= 0 && r < size else { throw MPIError(.rank, "rank \(r) is not in a group of \(size)") }
            out.append(other.members.firstIndex(of: members[r]))
        }
        return out
    }

    public func compare(_ other: Group) -> Comparison {
        if members == other.members { return .identical }
        return Set(members) == Set(other.members) && members.count == other.members.count ? .similar : .unequal
    }

    /// This process's rank in the group, if a member.
    public func rank(ofWorldRank w: Int) -> Int? { members.firstIndex(of: w) }
}

extension Communicator {
    /// The context of the library's own traffic on this communicator: its collectives.
    var collectiveContext: UInt16 { context + 1 }

    @inline(__always)
    func ensureUsable() throws(MPIError) {
        if freed.pointee { throw MPIError(.comm, "this communicator was freed") }
    }

    /// A context pair free on every member: everyone's free masks, ANDed.
    func agreeOnContext() throws(MPIError) -> UInt16 {
        var mask = contexts.freeMask()
        try allreduce(inPlace: &mask, .bitwiseAnd)
        guard let c = ContextIDs.lowest(mask) else {
            throw MPIError(.intern, "no context id is free on every member (too many communicators)")
        }
        contexts.take(c)
        return c
    }

    // MARK: making communicators

    /// Splits into one communicator per color (MPI_Comm_split): ranks ordered by `key`, then by
    /// rank here. A nil color: this rank gets no communicator. Collective.
    public func split(color: Int?, key: Int) throws(MPIError) -> Communicator? {
        try ensureUsable()
        if let c = color, c < 0 { throw MPIError(.other, "a color must be >= 0 (nil for none), not \(c)") }
        // Every member's (color, key); each works out its own group.
        let all = try allgather([Int64(color ?? -1), Int64(key)])
        let myGroup = color == nil ? [] : all.indices.filter { all[$0][0] == Int64(color!) }
            .sorted { (all[$0][1], $0) < (all[$1][1], $1) }.map { members[$0] }
        // The groups are disjoint: one new context pair serves them all.
        let ctx = try agreeOnContext()
        guard !myGroup.isEmpty, let me = myGroup.firstIndex(of: members[rank]) else {
            contexts.release(ctx)
            return nil
        }
        return Communicator(world: world, context: ctx, ranks: myGroup, myRank: me, contexts: contexts, engine: engine,
                            errorHandler: errorHandler)
    }

    /// The same group with a context of its own (MPI_Comm_dup). Collective.
    public func dup() throws(MPIError) -> Communicator {
        guard let c = try split(color: 0, key: rank) else { throw MPIError(.intern, "dup lost this rank") }
        return c
    }

    /// One communicator per host: the ranks that share memory (MPI_Comm_split_type SHARED).
    public func splitByHost() throws(MPIError) -> Communicator {
        try ensureUsable()
        let color: Int
        if let l = layout {
            color = l.hostOf[rank]
        } else {
            let host = Array(Communicator.hostName.utf8)
            color = try allgatherv(host).firstIndex(of: host)!
        }
        guard let c = try split(color: color, key: rank) else { throw MPIError(.intern, "split by host lost this rank") }
        return c
    }

    /// The members of `group` get a communicator of their own, in the group's order; others get
    /// nil (MPI_Comm_create). Collective over this communicator.
    public func create(from group: Group) throws(MPIError) -> Communicator? {
        let me = members[rank]
        guard group.members.allSatisfy(members.contains) else {
            throw MPIError(.rank, "the group has processes that are not in this communicator")
        }
        let position = group.rank(ofWorldRank: me)
        return try split(color: position == nil ? nil : 0, key: position ?? 0)
    }

    /// This communicator's group (MPI_Comm_group).
    public var group: Group { Group(worldRanks: members) }

    public enum Comparison: Sendable { case identical, congruent, similar, unequal }

    /// MPI_Comm_compare.
    public func compare(_ other: Communicator) -> Comparison {
        if other === self || (other.context == context && other.members == members) { return .identical }
        if other.members == members { return .congruent }
        return Set(other.members) == Set(members) ? .similar : .unequal
    }

    /// Releases the communicator (MPI_Comm_free); using it afterwards is an error of class comm.
    public func free() throws(MPIError) {
        try ensureUsable()
        guard context > 3 else { throw MPIError(.comm, "the world and self communicators cannot be freed") }
        freed.pointee = true
        contexts.release(context)
        leaveIntraHost()
    }
}

func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}

#if canImport(Glibc)
import Glibc
#endif
