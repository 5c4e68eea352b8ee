import XCTest
import Launcher
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A real two-node Slurm on this machine (Debian's slurm-wlm and munge, two slurmd), brought
/// up by the test with everything in a directory of its own (its munge socket, state, spool,
/// logs; SLURM_CONF points at its configuration) and taken down by pid afterwards.
final class SlurmTests: XCTestCase {
    var dir = ""
    var daemons: [ChildProcess] = []
    var env: [String: String] = [:]
    let rank = BuiltProducts.path("LauncherTestRank")
    let swiftrun = BuiltProducts.path("swiftrun")

    func sh(_ command: String) -> (Int32, String) { runCapturing("/bin/sh", ["-c", command], environment: env) }

    override func setUpWithError() throws {
        // Counted are directories whose owner is gone: a job running beside the tests is no leftover.
        let jobDirectoriesBefore = JobDirectory.names()
        addTeardownBlock {
            XCTAssertEqual(JobDirectory.ownerless().subtracting(jobDirectoriesBefore), [], "no job directory outlives its job")
        }
        guard getuid() == 0, access("/usr/sbin/slurmctld", X_OK) == 0, access("/usr/sbin/slurmd", X_OK) == 0,
              access("/usr/sbin/munged", X_OK) == 0, access("/etc/munge/munge.key", R_OK) == 0 else {
            throw XCTSkip("needs root, slurm-wlm and munge (bin/install-deps --all)")
        }
        var template = Array("/tmp/srtest-slurm-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        addTeardownBlock { [unowned self] in self.stopCluster() }
        for sub in ["state", "spool", "log", "munge", "mx"] { mkdir("\(dir)/\(sub)", 0o755) }
        let host = BackendLocation.localHostName().split(separator: ".").first.map(String.init) ?? "localhost"
        daemons.append(try ChildProcess.spawn("/usr/sbin/munged", [
            "--force", "--foreground", "--socket=\(dir)/munge/munge.socket", "--key-file=/etc/munge/munge.key",
            "--pid-file=\(dir)/munge/munged.pid", "--log-file=\(dir)/munge/munged.log", "--seed-file=\(dir)/munge/seed"]))
        let conf = """
        ClusterName=mxtest
        SlurmctldHost=\(host)
        SlurmctldPort=17817
        AuthType=auth/munge
        AuthInfo=socket=\(dir)/munge/munge.socket
        CredType=cred/munge
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        SelectType=select/cons_tres
        SelectTypeParameters=CR_Core
        StateSaveLocation=\(dir)/state
        SlurmdSpoolDir=\(dir)/spool/%n
        SlurmctldPidFile=\(dir)/slurmctld.pid
        SlurmdPidFile=\(dir)/slurmd-%n.pid
        SlurmctldLogFile=\(dir)/log/slurmctld.log
        SlurmdLogFile=\(dir)/log/slurmd-%n.log
        SlurmUser=root
        MpiDefault=pmi2
        ReturnToService=2
        NodeName=n1 NodeHostname=\(host) Port=17001 CPUs=2 State=UNKNOWN
        NodeName=n2 NodeHostname=\(host) Port=17002 CPUs=2 State=UNKNOWN
        PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE

        """
        writeFile("\(dir)/slurm.conf", conf)
        env = ["SLURM_CONF": "\(dir)/slurm.conf", MXDefaults.socketEnvironment: "\(dir)/mx/myrback.sock",
               MXDefaults.backendPathEnvironment: BuiltProducts.path("myrback")]
        for (k, v) in env { setenv(k, v, 1) }
        // Their chatter goes to the test's log folder (exec: the pid stays the daemon's).
        daemons.append(try ChildProcess.spawn("/bin/sh", ["-c", "exec /usr/sbin/slurmctld -D -f \(dir)/slurm.conf > \(dir)/log/slurmctld.out 2>&1"]))
        for node in ["n1", "n2"] {
            daemons.append(try ChildProcess.spawn("/bin/sh", ["-c", "exec /usr/sbin/slurmd -D -N \(node) -f \(dir)/slurm.conf > \(dir)/log/\(node).out 2>&1"]))
        }
        let deadline = monotonicNanoseconds() + 60_000_000_000
        while !sh("sinfo -h -o '%T %D'").1.contains("idle 2") {
            guard monotonicNanoseconds() < deadline else { throw MXError(.system, "Slurm did not come up: \(sh("sinfo").1)") }
            usleep(200_000)
        }
    }

    func stopCluster() {
        _ = sh("scontrol shutdown")
        for d in daemons.reversed() {
            d.signal(SIGTERM)
            if d.wait(seconds: 10) == nil { d.signal(SIGKILL); _ = d.wait() }
        }
        // A backend the srun'd ranks started on demand ends by its pid.
        if let mx = try? MXContext(socketPath: "\(dir)/mx/myrback.sock", startBackend: false) {
            let pid = (try? mx.info().backendPID) ?? 0
            mx.finalize()
            if pid > 0 { _ = terminate(pid: pid) }
        }
        for k in env.keys { unsetenv(k) }
        _ = runCapturing("/bin/rm", ["-rf", dir])
    }

    func testASwiftProgramUnderSrunWithPMI2() {
        let (code, out) = sh("timeout 60 srun --mpi=pmi2 -N 2 -n 4 \(rank) ring")
        XCTAssertEqual(code, 0, out)
        for r in 0..<4 { XCTAssertTrue(out.contains("rank \(r) of 4: ring ok"), out) }
    }

    func testSwiftrunInsideSallocUsesTheSlurmLauncher() {
        let (code, out) = sh("timeout 60 salloc -N 2 -n 4 \(swiftrun) -l \(rank) where 2>&1")
        XCTAssertEqual(code, 0, out)
        for r in 0..<4 {
            let node = r < 2 ? "n1" : "n2"
            XCTAssertTrue(out.contains("[\(r)] rank \(r) on \(node) nic "), "rank \(r) on \(node): \(out)")
        }
        XCTAssertTrue(out.contains("sees n1,n1,n2,n2"), out)
        let (code2, out2) = sh("timeout 60 salloc -N 2 -n 4 \(swiftrun) \(rank) exit 7 2 2>&1")
        XCTAssertEqual(code2, 7, out2)
        XCTAssertTrue(out2.contains("rank 2 (pid ") && out2.contains("on n2 exited with code 7"), out2)
    }
}

final class SlurmAllocationTests: XCTestCase {
    func testNodeListsAndTaskCounts() throws {
        XCTAssertEqual(try SlurmAllocation.expand(nodeList: "n[1-2]"), ["n1", "n2"])
        XCTAssertEqual(try SlurmAllocation.expand(nodeList: "node[10,20-22],big[08-09],x"),
                       ["node10", "node20", "node21", "node22", "big08", "big09", "x"])
        XCTAssertEqual(try SlurmAllocation.expand(tasksPerNode: "2(x3),1"), [2, 2, 2, 1])
        XCTAssertThrowsError(try SlurmAllocation.expand(nodeList: "n[1-"))
        XCTAssertThrowsError(try SlurmAllocation.expand(tasksPerNode: "2(y3)"))
        // Issue 8.6: no count from the environment crashes swiftrun (2() indexed past its end,
        // 2(x99999999999) allocated without bound).
        for (tasks, words) in [("2()", "'2()' is not N(xM)"), ("2(x", "'2(x' is not N(xM)"), ("0", "'0' is not N or N(xM)"),
                               ("2(x99999999999)", "more than 65536 nodes"), ("9999999999999999999999", "is more than the 8192 ranks a host can hold"),
                               ("1(x65536),1", "more than 65536 nodes")] {
            XCTAssertThrowsError(try SlurmAllocation.expand(tasksPerNode: tasks), tasks) {
                XCTAssertTrue(($0 as! LaunchError).message.contains(words), "\($0) should say \(words)")
            }
        }
        XCTAssertEqual(try SlurmAllocation.expand(tasksPerNode: "8192(x65536)").count, 65536)
        XCTAssertThrowsError(try SlurmAllocation.expand(nodeList: "a[0-65535],b"))
        let hosts = try SlurmAllocation.hosts(environment: ["SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)"])
        XCTAssertEqual(hosts, [HostEntry(name: "n1", slots: 2), HostEntry(name: "n2", slots: 2)])
        XCTAssertNil(try SlurmAllocation.hosts(environment: [:]), "outside an allocation")
    }
}
