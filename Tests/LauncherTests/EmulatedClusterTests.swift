import XCTest
import Launcher
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Jobs across the emulated VMs of a cluster: two network namespaces made (and removed) by the
/// test, joined by a veth pair on a subnet of their own. Each VM gets its own backend (its own
/// NIC ids) and ranks started through `ip netns exec`.
final class EmulatedClusterTests: XCTestCase {
    var vms: [String] = []
    var hostfile = ""
    var subnet = ""
    let swiftrun = BuiltProducts.path("swiftrun")
    let rank = BuiltProducts.path("LauncherTestRank")

    override func setUpWithError() throws {
        // Counted are directories whose owner is gone: a job running beside the tests is no leftover.
        let jobDirectoriesBefore = JobDirectory.names()
        addTeardownBlock {
            XCTAssertEqual(JobDirectory.ownerless().subtracting(jobDirectoriesBefore), [], "no job directory outlives its job")
        }
        guard let cluster = try EmulatedVMs() else { throw XCTSkip("needs root and iproute2 to make network namespaces") }
        addTeardownBlock { cluster.remove() }
        (vms, hostfile, subnet) = (cluster.names, cluster.hostfile, cluster.subnet)
    }

    func sh(_ command: String) throws { try EmulatedVMs.sh(command) }

    func testRanksRunInsideEachVMWithItsOwnBackend() throws {
        let (code, out) = runCapturing(swiftrun, ["-f", hostfile, rank, "where"])
        XCTAssertEqual(code, 0, out)
        let lines = out.split(separator: "\n").filter { $0.hasPrefix("rank ") }
        XCTAssertEqual(lines.count, 4, out)
        var nicOf: [String: Set<String>] = [:]
        for r in 0..<4 {
            let vm = vms[r / 2]
            guard let l = lines.first(where: { $0.hasPrefix("rank \(r) on ") }) else { return XCTFail("rank \(r) missing: \(out)") }
            XCTAssertTrue(l.hasPrefix("rank \(r) on \(vm) nic "), String(l))
            XCTAssertTrue(l.contains(" ip \(subnet).\(r / 2 + 1) "), "rank \(r) sees its VM's address: \(l)")
            XCTAssertTrue(l.hasSuffix("sees \(vms[0]),\(vms[0]),\(vms[1]),\(vms[1])"), "one key-value space for the job: \(l)")
            let nic = l.split(separator: " ")[5]
            nicOf[vm, default: []].insert(String(nic))
        }
        XCTAssertEqual(nicOf[vms[0]]?.count, 1)
        XCTAssertEqual(nicOf[vms[1]]?.count, 1)
        XCTAssertNotEqual(nicOf[vms[0]], nicOf[vms[1]], "each VM has its own board")
    }

    func testAnMPICHProgramAcrossTwoVMs() throws {
        guard access("/usr/bin/mpicc.mpich", X_OK) == 0 else { throw XCTSkip("mpicc.mpich is not installed") }
        let source = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/") + "/Programs/mpi_hello.c"
        let program = "/tmp/srtest-mpi-cluster-\(getpid())"
        defer { unlink(program) }
        try sh("mpicc.mpich -O2 -o \(program) \(source)")
        let (code, out) = runCapturing(swiftrun, ["--timeout", "60", "-f", hostfile, "--map-by", "node", "-n", "2", program])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("rank 0 of 2: sum 1 ok") && out.contains("rank 1 of 2: sum 1 ok"), out)
    }

    func testAFailingRankInAVMEndsTheWholeJob() throws {
        let start = monotonicNanoseconds()
        let (code, out) = runCapturing(swiftrun, ["-f", hostfile, rank, "exit", "4", "3"])
        XCTAssertEqual(code, 4, out)
        XCTAssertTrue(out.contains("rank 3 (pid ") && out.contains("on \(vms[1]) exited with code 4"), out)
        XCTAssertLessThan(monotonicNanoseconds() - start, 3_000_000_000)
    }

    func testAHostThatIsNeitherHereNorAVMIsRefusedClearly() {
        let (code, out) = runCapturing(swiftrun, ["--host", "\(vms[0]):1,not-a-vm-\(getpid()):1", "-n", "2", "/bin/true"])
        XCTAssertEqual(code, 2)
        XCTAssertTrue(out.contains("cannot reach not-a-vm-\(getpid()) (ssh ended with exit code 255"), out)
        XCTAssertEqual(out.split(separator: "\n").count, 1, "one line, with ssh's own words in it: \(out)")
    }

    func testSIGKILLOfSwiftrunLeavesNothingBehind() throws {
        // A job in both VMs; swiftrun is killed with SIGKILL once every rank runs. Its agents
        // end their ranks, backends and directories, and the job's own directory (the agents'
        // callback socket) does not outlive its owner: it is gone, or the next swiftrun removes it.
        let marker = "kill9-\(getpid())-\(monotonicNanoseconds() % 1_000_000)"
        let before = JobDirectory.names()
        let job = try ChildProcess.spawn("/bin/sh", ["-c", "exec '\(swiftrun)' -f '\(hostfile)' '\(rank)' hang \(marker) >/dev/null"])
        var dead = false
        defer { if !dead { job.signal(SIGKILL); _ = job.wait() } }
        let deadline = monotonicNanoseconds() + 30_000_000_000
        while processes(commandLineContaining: marker).count < 5 && monotonicNanoseconds() < deadline { usleep(20_000) }
        XCTAssertEqual(processes(commandLineContaining: marker).count, 5, "swiftrun and four ranks")
        let owned = JobDirectory.names().subtracting(before).filter { $0.hasPrefix("swiftrun-\(job.pid).") }
        XCTAssertEqual(owned.count, 1, "the job's directory is named after its owner: \(JobDirectory.names().subtracting(before))")
        let directory = "/tmp/" + (owned.first ?? "none")
        XCTAssertEqual(access(directory + "/agents.sock", F_OK), 0, "the agents' callback socket")
        let agents = processes(commandLineContaining: "--agent unix:\(directory)/agents.sock")
        XCTAssertEqual(agents.count, 2, "one agent a VM")

        job.signal(SIGKILL)
        XCTAssertEqual(job.wait(), .signalled(SIGKILL))
        dead = true
        let t0 = monotonicNanoseconds()
        func leftovers() -> [Int32] { processes(commandLineContaining: marker) + agents.filter(processExists) }
        while !leftovers().isEmpty && monotonicNanoseconds() - t0 < 10_000_000_000 { usleep(20_000) }
        XCTAssertEqual(leftovers(), [], "every agent and rank is gone")
        XCTAssertLessThan(monotonicNanoseconds() - t0, 5_000_000_000, "within a few seconds")
        if access(directory, F_OK) == 0 {
            let (code, out) = runCapturing(swiftrun, ["-n", "1", "/bin/true"])
            XCTAssertEqual(code, 0, out)
        }
        XCTAssertNotEqual(access(directory, F_OK), 0, "no directory of the killed job is left")
    }
}
