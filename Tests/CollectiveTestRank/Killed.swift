#if canImport(Glibc)
import Glibc
#endif
@_spi(Testing) import MPI

/// A rank killed in the middle of a job's collectives (SIGKILL, as the OOM killer or a crash
/// would end it), while the others wait for it in a shared-memory allreduce and, on a
/// communicator forced onto the channel, in a schedule: the job must end promptly, with the
/// dead rank named, none of the others left waiting (CollectiveTests checks the launcher's
/// report). Run by name only (suite "killed").
func killedSuite(_ h: Harness) throws {
    let comm = h.world, p = comm.size, me = comm.rank
    for k in 0..<100 { _ = try comm.allreduce(k, .sum) } // the segment is made and used
    if me == p - 1 { raise(SIGKILL) }
    if me % 2 == 0 {
        _ = try comm.allreduce(1, .sum) // through the segment: waits on the dead rank's flag
    } else {
        let saved = Selection.forced
        defer { Selection.forced = saved }
        Selection.forced[.allreduce] = .recursiveDoubling // through the channel
        _ = try comm.allreduce([Int](repeating: 1, count: 100_000), .sum)
    }
    h.fail("rank \(me): a collective with a killed rank completed")
}
