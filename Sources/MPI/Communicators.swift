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
    /// The internal operations on the collective context, one tag each.
    enum CollectiveOp: Int { case barrier = 1, split = 2, contextMask = 3, hosts = 4 }

    var collectiveContext: UInt16 { context + 1 }

    @inline(__always)
    func ensureUsable() throws(MPIError) {
        if freed.pointee { throw MPIError(.comm, "this communicator was freed") }
    }

    /// Every member's bytes, at rank 0 (others get []).
    func gatherToRoot(_ bytes: [UInt8], op: CollectiveOp) throws(MPIError) -> [[UInt8]] {
        let tag = op.rawValue
        if rank != 0 {
            try sendInternal(bytes, to: 0, tag: tag)
            return []
        }
        var all = [[UInt8]](repeating: [], count: size)
        all[0] = bytes
        for _ in 1..<max(size, 1) {
            let (data, from) = try receiveInternal(tag: tag, from: nil)
            all[from] = data
        }
        return all
    }

    /// Rank 0's bytes, everywhere (rank 0 passes them, others receive them).
    func broadcastFromRoot(_ bytes: [UInt8], op: CollectiveOp) throws(MPIError) -> [UInt8] {
        let tag = op.rawValue
        if rank == 0 {
            for r in 1..<max(size, 1) { try sendInternal(bytes, to: r, tag: tag) }
            return bytes
        }
        return try receiveInternal(tag: tag, from: 0).0
    }

    func sendInternal(_ bytes: [UInt8], to r: Int, tag: Int) throws(MPIError) {
        let to = try address(r)
        let info = MatchBits.info(context: collectiveContext, source: rank, tag: tag)
        let sent: Result<Void, MPIError> = bytes.withUnsafeBytes { raw in
            Result { () throws(MPIError) in
                try mx(peer: r) { () throws(MXError) in _ = try endpoint.wait(try endpoint.isend(raw, to: to, matchInfo: info)) }
            }
        }
        try sent.get()
    }

    func receiveInternal(tag: Int, from: Int?) throws(MPIError) -> ([UInt8], Int) {
        let (info, mask) = MatchBits.receive(context: collectiveContext, source: from, tag: tag)
        let sender = try self.sender(from.map { .rank($0) } ?? .any)
        let st = try mx(peer: from) { () throws(MXError) in try endpoint.probe(matchInfo: info, mask: mask, from: sender) }
        var data = [UInt8](repeating: 0, count: st.messageLength)
        let exact = MatchBits.info(context: collectiveContext, source: MatchBits.source(st.matchInfo), tag: tag)
        let received: Result<MXStatus, MPIError> = data.withUnsafeMutableBytes { raw in
            Result { () throws(MPIError) in
                try mx { () throws(MXError) in try endpoint.wait(try endpoint.irecv(raw, matchInfo: exact, mask: .max)) }
            }
        }
        _ = try received.get()
        return (data, MatchBits.source(st.matchInfo))
    }

    /// A context pair free on every member: rank 0 ANDs everyone's free masks.
    func agreeOnContext() throws(MPIError) -> UInt16 {
        let mine = contexts.freeMask().withUnsafeBytes { Array($0) }
        let all = try gatherToRoot(mine, op: .contextMask)
        var chosen = [UInt8](repeating: 0xFF, count: 2)
        if rank == 0 {
            var mask = [UInt64](repeating: .max, count: ContextIDs.pairs / 64)
            for bytes in all {
                bytes.withUnsafeBytes { raw in
                    for k in 0..<mask.count { mask[k] &= raw.loadUnaligned(fromByteOffset: k * 8, as: UInt64.self) }
                }
            }
            if let c = ContextIDs.lowest(mask) { chosen = [UInt8(c & 0xFF), UInt8(c >> 8)] }
        }
        let answer = try broadcastFromRoot(chosen, op: .contextMask)
        let c = UInt16(answer[0]) | UInt16(answer[1]) << 8
        guard c != 0xFFFF else { throw MPIError(.intern, "no context id is free on every member (too many communicators)") }
        contexts.take(c)
        return c
    }

    // MARK: making communicators

    /// Splits into one communicator per color (MPI_Comm_split): ranks ordered by `key`, then by
    /// rank here. A nil color: this rank gets no communicator. Collective.
    public func split(color: Int?, key: Int) throws(MPIError) -> Communicator? {
        try ensureUsable()
        if let c = color, c < 0 { throw MPIError(.other, "a color must be >= 0 (nil for none), not \(c)") }
        var mine: [UInt8] = []
        for v in [Int64(color ?? -1), Int64(key)] { withUnsafeBytes(of: v.littleEndian) { mine += $0 } }
        let all = try gatherToRoot(mine, op: .split)
        var table: [UInt8] = []
        if rank == 0 {
            // For every rank here: the new group (world ranks in order) it belongs to.
            let entries = all.enumerated().map { (r, b) -> (rank: Int, color: Int64, key: Int64) in
                b.withUnsafeBytes { (r, $0.loadUnaligned(as: Int64.self), $0.loadUnaligned(fromByteOffset: 8, as: Int64.self)) }
            }
            for e in entries {
                let group = e.color < 0 ? [] : entries.filter { $0.color == e.color }.sorted { ($0.key, $0.rank) < ($1.key, $1.rank) }.map { members[$0.rank] }
                withUnsafeBytes(of: Int64(group.count).littleEndian) { table += $0 }
                for w in group { withUnsafeBytes(of: Int64(w).littleEndian) { table += $0 } }
            }
        }
        let groups = try broadcastFromRoot(table, op: .split)
        // The groups are disjoint: one new context pair serves them all.
        let ctx = try agreeOnContext()
        var offset = 0
        var myGroup: [Int] = []
        groups.withUnsafeBytes { raw in
            for r in 0..<size {
                let n = Int(raw.loadUnaligned(fromByteOffset: offset, as: Int64.self))
                offset += 8
                let g = (0..<n).map { Int(raw.loadUnaligned(fromByteOffset: offset + $0 * 8, as: Int64.self)) }
                offset += n * 8
                if r == rank { myGroup = g }
            }
        }
        guard !myGroup.isEmpty, let me = myGroup.firstIndex(of: members[rank]) else {
            contexts.release(ctx)
            return nil
        }
        return Communicator(world: world, context: ctx, ranks: myGroup, myRank: me, contexts: contexts, errorHandler: errorHandler)
    }

    /// The same group with a context of its own (MPI_Comm_dup). Collective.
    public func dup() throws(MPIError) -> Communicator {
        guard let c = try split(color: 0, key: rank) else { throw MPIError(.intern, "dup lost this rank") }
        return c
    }

    /// One communicator per host: the ranks that share memory (MPI_Comm_split_type SHARED).
    public func splitByHost() throws(MPIError) -> Communicator {
        try ensureUsable()
        let host = Array((getenvString("SWIFTRUN_HOST") ?? BackendLocation.localHostName()).utf8)
        let all = try gatherToRoot(host, op: .hosts)
        var colors: [UInt8] = []
        if rank == 0 {
            var seen: [[UInt8]] = []
            for h in all {
                let c = seen.firstIndex(of: h) ?? { seen.append(h); return seen.count - 1 }()
                withUnsafeBytes(of: Int64(c).littleEndian) { colors += $0 }
            }
        }
        let table = try broadcastFromRoot(colors, op: .hosts)
        let color = table.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: rank * 8, as: Int64.self)) }
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
    }
}

func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}

#if canImport(Glibc)
import Glibc
#endif
