@testable import MPI

/// Non-blocking collectives in flight together, with point-to-point traffic between them.
func nonBlockingSuite(_ h: Harness) throws {
    let comm = h.world
    let p = comm.size, me = comm.rank
    // Four collectives at once on one communicator, plus a ring of sends and receives.
    let sums = try comm.iallreduce([Double(me), 1], .sum)
    let gathered = try comm.iallgather([Int32(me)])
    let barrier = try comm.ibarrier()
    let broadcast = try comm.ibcast(me == p - 1 ? [7, 8, 9] : [0, 0, 0], root: p - 1)
    let incoming = try comm.ireceive(Int.self, count: 1, from: .rank((me - 1 + p) % p), tag: 3)
    let outgoing = try comm.isend([me * 100], to: (me + 1) % p, tag: 3)
    // Completed in the reverse order of starting: each wait advances the others.
    h.expectEqual(try incoming.wait(), [((me - 1 + p) % p) * 100], "the point-to-point receive among collectives")
    try outgoing.wait()
    h.expectEqual(try broadcast.wait(), [7, 8, 9], "ibcast among others")
    try barrier.wait()
    h.expectEqual(try gathered.wait(), (0..<p).map { Int32($0) }.map { [$0] }.flatMap { $0 }, "iallgather among others")
    h.expectEqual(try sums.wait(), [Double(p * (p - 1) / 2), Double(p)], "iallreduce among others")
    // waitAny over a mix of a collective and a receive of the same value type.
    let a = try comm.iallreduce([me], .sum)
    let b = try comm.ireceive(Int.self, count: 1, from: .rank((me + 1) % p), tag: 4)
    try comm.send([me], to: (me - 1 + p) % p, tag: 4)
    let results = try Request.waitAll([a, b])
    h.expectEqual(results[0], [p * (p - 1) / 2], "iallreduce in waitAll with a receive")
    h.expectEqual(results[1], [(me + 1) % p], "receive in waitAll with an iallreduce")
}
