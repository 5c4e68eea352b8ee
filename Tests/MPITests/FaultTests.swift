import XCTest
import Dispatch
import Launcher
import MPI
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Faults between emulated VMs, as an MPI program sees them: frames lost at the end of a job,
/// a link cut for longer than the host timeout, a short outage. Each job runs through swiftrun
/// on two network namespaces the test makes and removes.
final class FaultTests: XCTestCase {
    var cluster: EmulatedVMs!
    let swiftrun = BuiltProducts.path("swiftrun")
    let rank = BuiltProducts.path("MPITestRank")

    override func setUpWithError() throws {
        // Counted are directories whose owner is gone: a job running beside the tests is no leftover.
        let jobDirectoriesBefore = JobDirectory.names()
        addTeardownBlock {
            XCTAssertEqual(JobDirectory.ownerless().subtracting(jobDirectoriesBefore), [], "no job directory outlives its job")
        }
        guard let c = try EmulatedVMs() else { throw XCTSkip("needs root and iproute2 to make network namespaces") }
        cluster = c
        addTeardownBlock { c.remove() }
    }

    /// Every rank sends to every other and finalizes at once, with one frame in 20 lost: a
    /// sender's last frames are resent while it waits in finalize (drain, then a PMI barrier
    /// that keeps the endpoint progressing). 200 jobs; none may hang, every result must be right.
    func testFinalizeDrainsLostFramesInTwoHundredJobs() {
        var failures: [String] = []
        for run in 0..<200 where failures.count < 3 {
            let n = run % 2 == 0 ? 4 : 2
            let (code, out) = runCapturing(swiftrun, ["--timeout", "20", "-f", cluster.hostfile, "--map-by", "node",
                                                      "-n", String(n), rank, "drain"],
                                           environment: [MXWire.dropEnvironment: "20"])
            let okRanks = (0..<n).filter { out.contains("rank \($0): ok drained\n") }.count
            if code != 0 || okRanks != n { failures.append("run \(run) (\(n) ranks): exit \(code)\n\(out)") }
        }
        XCTAssertEqual(failures, [], "jobs that hung or went wrong")
    }

    /// Runs an `exchange` job between ranks on the two VMs; once it is under way (rank 0's
    /// marker), cuts VM 1's link for `outage` seconds (nil: until the job ends).
    func exchange(seconds: Int, outage: Double?, throwing: Bool = false, hostTimeout: Int? = nil)
        -> (code: Int32, output: String, cutToEnd: Double) {
        let marker = "/tmp/srtest-exchange-\(getpid())"
        unlink(marker)
        defer { unlink(marker) }
        var args = ["--timeout", "60", "-f", cluster.hostfile, "--map-by", "node", "-n", "2", rank, "exchange", String(seconds), marker]
        if throwing { args.append("throwing") }
        // The job runs on another thread; the semaphore orders its result before our reads.
        final class Outcome: @unchecked Sendable { var value: (Int32, String) = (-1, "") }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let environment = hostTimeout.map { [MXWire.hostTimeoutEnvironment: String($0)] } ?? [:]
        let (swiftrun, arguments) = (swiftrun, args)
        DispatchQueue.global().async {
            outcome.value = runCapturing(swiftrun, arguments, environment: environment)
            done.signal()
        }
        var result: (Int32, String) { outcome.value }
        // The job signals that it runs by creating the marker (or it ended without one).
        while access(marker, F_OK) != 0 {
            if done.wait(timeout: .now() + .milliseconds(20)) == .success { return (result.0, result.1, 0) }
        }
        let cut = monotonicNanoseconds()
        XCTAssertNoThrow(try cluster.setLink(of: 1, up: false))
        if let outage {
            usleep(useconds_t(outage * 1e6))   // the outage itself: how long the cable is out
            XCTAssertNoThrow(try cluster.setLink(of: 1, up: true))
        }
        done.wait()
        let end = monotonicNanoseconds()
        if outage == nil { XCTAssertNoThrow(try cluster.setLink(of: 1, up: true)) }
        return (result.0, result.1, Double(end - cut) / 1e9)
    }

    /// A link cut longer than the host timeout: both backends declare the other host lost, the
    /// pending receives fail with MPI_ERR_PROC_FAILED naming the rank and its host, and errors
    /// being fatal by default, the job ends through swiftrun with the rank's report, nonzero,
    /// within the host timeout plus a second or two.
    func testALinkCutLongerThanTheHostTimeoutEndsTheJobClearly() {
        let (code, out, took) = exchange(seconds: 60, outage: nil, hostTimeout: 3)
        XCTAssertEqual(code, ErrorHandler.fatalExitCode, out)
        XCTAssertTrue(out.contains("aborted the job with code \(ErrorHandler.fatalExitCode)"), out)
        XCTAssertTrue(out.contains("MPI_ERR_PROC_FAILED: rank 1 on \(cluster.names[1]) is gone")
                      || out.contains("MPI_ERR_PROC_FAILED: rank 0 on \(cluster.names[0]) is gone"), out)
        XCTAssertTrue(out.contains("stopped answering"), out)
        XCTAssertGreaterThan(took, 2.5, "not before the host timeout: \(out)")
        XCTAssertLessThan(took, 3 + 5, "within the host timeout and a little (the job's teardown included): \(out)")
    }

    /// The same cut with errors thrown: each rank catches the failure, and later operations
    /// toward the lost rank fail at once the same way; the job then finalizes and ends cleanly.
    func testWithThrowingErrorsEveryLaterOperationFailsToo() {
        let (code, out, _) = exchange(seconds: 60, outage: nil, throwing: true, hostTimeout: 3)
        XCTAssertEqual(code, 0, out)
        for (me, other) in [(0, 1), (1, 0)] {
            let gone = "MPI_ERR_PROC_FAILED: rank \(other) on \(cluster.names[other]) is gone"
            for what in ["caught", "later send:", "later receive:"] {
                XCTAssertTrue(out.contains("rank \(me): \(what) \(gone)"), "rank \(me), \(what)\n\(out)")
            }
            XCTAssertTrue(out.contains("rank \(me): ok any-source probe after the loss"), out)
        }
    }

    /// A 3 s outage, shorter than the default host timeout: resends carry the exchange over it,
    /// and every round's values are right.
    func testAThreeSecondOutageRecovers() {
        let (code, out, took) = exchange(seconds: 5, outage: 3)
        XCTAssertEqual(code, 0, out)
        for r in 0..<2 { XCTAssertTrue(out.contains("rank \(r): ok exchanged "), out) }
        XCTAssertGreaterThan(took, 3, out)
    }
}
