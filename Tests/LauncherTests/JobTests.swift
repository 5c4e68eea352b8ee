import XCTest
import Dispatch
import Launcher
import MyriXen
import Topology
import MyriXenTestSupport
import CMyriXen
#if canImport(Glibc)
import Glibc
#endif

/// swiftrun end to end on this host: real ranks (a Swift program on the channel layer, a C
/// program built with MPICH), real signals, and checks that nothing is left behind.
final class JobTests: XCTestCase {
    let swiftrun = BuiltProducts.path("swiftrun")
    let rank = BuiltProducts.path("LauncherTestRank")
    /// A word on every rank's command line, to find leftovers of this test (never to kill them).
    var marker = ""

    override func setUp() {
        marker = "job-\(getpid())-\(monotonicNanoseconds() % 1_000_000_000)"
    }

    override func tearDown() {
        XCTAssertEqual(processesWithMarker(), [], "no rank of the test is left running")
        XCTAssertEqual(leftJobDirectories(), [], "no job directory is left in /tmp")
    }

    /// The job directories in /tmp before the test's first job (those of other jobs too).
    lazy var before: Set<String> = JobDirectory.names()

    /// `killAfter`: SIGKILL swiftrun after that many seconds (coreutils `timeout`), for tests
    /// whose failure would be a swiftrun that ignores its own --timeout and SIGTERM.
    func run(_ args: [String], stdin: String? = nil, killAfter: Int? = nil, file: StaticString = #filePath, line: UInt = #line) -> (code: Int32, output: String, seconds: Double) {
        _ = before
        let start = monotonicNanoseconds()
        let (code, out): (Int32, String)
        if let seconds = killAfter {
            (code, out) = runCapturing("/usr/bin/timeout", ["-s", "KILL", String(seconds), swiftrun] + args)
        } else if let input = stdin {
            let cmd = "printf '\(input)' | '\(swiftrun)' " + args.map { "'\($0)'" }.joined(separator: " ")
            (code, out) = runCapturing("/bin/sh", ["-c", cmd])
        } else {
            (code, out) = runCapturing(swiftrun, args)
        }
        return (code, out, Double(monotonicNanoseconds() - start) / 1e9)
    }

    func processesWithMarker() -> [Int32] { processes(commandLineContaining: marker) }

    /// Job directories that ended jobs left since `before`; a job running beside the tests
    /// (its owner lives) is no leftover.
    func leftJobDirectories() -> Set<String> { JobDirectory.ownerless().subtracting(before) }

    // MARK: running

    /// swiftrun's own output read by nobody (a paused pager, a pipe nobody drains): it waits
    /// for its reader as any program does, but its --timeout and a SIGTERM still end the job.
    func testAStalledReaderOfSwiftrunsOutputDoesNotKeepTheJobFromEnding() throws {
        _ = before
        let fifo = "/tmp/srtest-stalled-\(getpid())", pidFile = "/tmp/srtest-stalled-\(getpid()).pid"
        unlink(fifo)
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo); unlink(pidFile) }
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)   // held open, never read (until the end)
        XCTAssertGreaterThanOrEqual(reader, 0)
        defer { close(reader) }
        func drain() { var b = [UInt8](repeating: 0, count: 65536); while read(reader, &b, b.count) > 0 {} }
        // The whole job under `timeout -s KILL`: a hang fails the test instead of stopping the suite.
        let job = "'/usr/bin/timeout' -s KILL 30 '\(swiftrun)' -n 1 /usr/bin/yes \(marker) > '\(fifo)'"

        let start = monotonicNanoseconds()
        let (code, out) = runCapturing("/bin/sh", ["-c", job.replacingOccurrences(of: "-n 1", with: "--timeout 2 -n 1")])
        XCTAssertEqual(code, 124, "the --timeout still ends it: \(out)")
        XCTAssertLessThan(Double(monotonicNanoseconds() - start) / 1e9, 2 + 4, out)
        drain()

        final class Outcome: @unchecked Sendable { var value: (Int32, String) = (-1, "") }
        let outcome = Outcome(), done = DispatchSemaphore(value: 0)
        let command = "echo $$ > '\(pidFile)'; exec " + job
        DispatchQueue.global().async {
            outcome.value = runCapturing("/bin/sh", ["-c", command])
            done.signal()
        }
        // Until its output is stuck: the pipe is full and swiftrun waits for room.
        var queued: Int32 = 0
        let limit = monotonicNanoseconds() + 20_000_000_000
        while queued < 60_000 && monotonicNanoseconds() < limit {
            _ = ioctl(reader, UInt(FIONREAD), &queued)
            usleep(10_000)
        }
        XCTAssertGreaterThanOrEqual(queued, 60_000, "the pipe filled")
        let pid = Int32(String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: pidFile))) ?? Data(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        XCTAssertGreaterThan(pid, 0)
        let signalled = monotonicNanoseconds()
        kill(pid, SIGTERM)   // to `timeout`, which passes it on to swiftrun
        XCTAssertEqual(done.wait(timeout: .now() + 25), .success)
        XCTAssertEqual(outcome.value.0, 128 + SIGTERM, "SIGTERM still ends it: \(outcome.value.1)")
        XCTAssertLessThan(Double(monotonicNanoseconds() - signalled) / 1e9, 3, outcome.value.1)
        drain()
    }

    func testOneToSixteenRanksPassATokenAround() {
        for n in [1, 2, 4, 8, 16] {
            let r = run(["-n", String(n), rank, "ring", marker])
            XCTAssertEqual(r.code, 0, r.output)
            for k in 0..<n { XCTAssertTrue(r.output.contains("rank \(k) of \(n): ring ok"), "rank \(k) of \(n): \(r.output)") }
        }
    }

    func testSixtyFourRanksOnTwoCores() {
        // Two emulated boards for the job (32 endpoints each); ranks beyond the cores unbound.
        let r = run(["-n", "64", rank, "ring", marker])
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertEqual(r.output.split(separator: "\n").filter { $0.hasSuffix("ring ok (appnum 0)") }.count, 64)
    }

    func testEndpointKeysCannotBeGuessedFromTheJobsName() {
        // Issue 8.9: every endpoint's key was FNV-1a of kvs_<pid>_0, which any host on the
        // subnet could compute. Now each endpoint's key is random and travels in the KVS only.
        var keys: [String] = []
        for _ in 0..<2 {
            let r = run(["-n", "3", rank, "guess", marker])
            XCTAssertEqual(r.code, 0, r.output)
            XCTAssertTrue(r.output.contains("rank 1: the key guessed from kvs_") && r.output.contains("was refused"), r.output)
            XCTAssertEqual(r.output.components(separatedBy: "is not the guessable one").count - 1, 3, r.output)
            XCTAssertEqual(r.output.components(separatedBy: "ring ok").count - 1, 3, "the published keys connect: \(r.output)")
            keys += r.output.split(separator: "\n").filter { $0.hasSuffix("the guessable one") }.map { String($0.split(separator: " ")[3]) }
        }
        XCTAssertEqual(keys.count, 6)
        XCTAssertEqual(Set(keys).count, 6, "every endpoint of every job has a key of its own: \(keys)")
    }

    func testMPMDSectionsGetTheirAppNumbers() {
        let r = run(["-n", "2", rank, "ring", marker, ":", "-n", "1", rank, "ring", marker])
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertTrue(r.output.contains("rank 0 of 3: ring ok (appnum 0)"), r.output)
        XCTAssertTrue(r.output.contains("rank 2 of 3: ring ok (appnum 1)"), r.output)
    }

    func testAnMPICHProgramRunsUnderSwiftrun() throws {
        let program = try buildMPICHProgram()
        let r = run(["-n", "4", program, marker])
        XCTAssertEqual(r.code, 0, r.output)
        for k in 0..<4 { XCTAssertTrue(r.output.contains("rank \(k) of 4: sum 6 ok"), r.output) }
        let aborted = run(["-n", "3", program, "abort", marker])
        XCTAssertEqual(aborted.code, 7, aborted.output)
        XCTAssertTrue(aborted.output.contains("rank 2 (pid "), aborted.output)
    }

    func testPMIOverTCPWithPMIPortAndPMIID() throws {
        let program = try buildMPICHProgram()
        let c = run(["--pmi-port", "-n", "3", program, marker])
        XCTAssertEqual(c.code, 0, c.output)
        XCTAssertEqual(c.output.split(separator: "\n").filter { $0.hasSuffix("sum 3 ok") }.count, 3, c.output)
        let swift = run(["--pmi-port", "-n", "3", rank, "ring", marker])
        XCTAssertEqual(swift.code, 0, swift.output)
        XCTAssertTrue(swift.output.contains("rank 2 of 3: ring ok"), swift.output)
        // A stranger on the port (a wrong pmiid, or not PMI at all) gets nothing, and the job goes on.
        let probe = """
        for hello in 'cmd=initack pmiid=99' 'GET / HTTP/1.0' 'cmd=initack pmiid=-9223372036854775808'; do
          exec 5<>/dev/tcp/${PMI_PORT%:*}/${PMI_PORT#*:}; echo "$hello" >&5
          if read -t 2 line <&5; then echo "stranger got: $line"; else echo "stranger got nothing"; fi
          exec 5<&-
        done
        exec \(rank) ring \(marker)
        """
        let s = run(["--pmi-port", "-n", "1", "/bin/bash", "-c", probe])
        XCTAssertEqual(s.code, 0, s.output)
        XCTAssertEqual(s.output.components(separatedBy: "stranger got nothing").count - 1, 3, s.output)
        XCTAssertTrue(s.output.contains("rank 0 of 1: ring ok"), s.output)
    }

    func testASwiftRankRunsUnderMPICHsHydraAndAlone() throws {
        guard access("/usr/bin/mpiexec.hydra", X_OK) == 0 else { throw XCTSkip("MPICH's mpiexec.hydra is not installed") }
        let backend = try TestBackend()
        defer { backend.stop() }
        let env = [MXDefaults.socketEnvironment: backend.socketPath]
        let (code, out) = runCapturing("/usr/bin/mpiexec.hydra", ["-n", "3", rank, "ring", marker], environment: env)
        XCTAssertEqual(code, 0, out)
        for k in 0..<3 { XCTAssertTrue(out.contains("rank \(k) of 3: ring ok"), out) }
        let (code1, out1) = runCapturing(rank, ["ring", marker], environment: env)
        XCTAssertEqual(code1, 0, out1)
        XCTAssertTrue(out1.contains("rank 0 of 1: ring ok"), "without PMI variables: a singleton: \(out1)")
    }

    func testOutputIsForwardedWholeLinesWithTags() {
        let r = run(["-n", "4", "-l", rank, "lines", "150", marker])
        XCTAssertEqual(r.code, 0)
        let lines = r.output.split(separator: "\n")
        var seen = [Int](repeating: 0, count: 4)
        for l in lines {
            guard l.hasPrefix("[") else { continue }
            let tag = Int(l.dropFirst().prefix { $0 != "]" })!
            XCTAssertTrue(l.hasPrefix("[\(tag)] rank \(tag) line \(seen[tag]) xxx"), "line split or out of order: \(l.prefix(60))")
            XCTAssertTrue(l.hasSuffix(" end"), "line cut: \(l.suffix(20))")
            seen[tag] += 1
        }
        XCTAssertEqual(seen, [150, 150, 150, 150])
    }

    func testStdinGoesToRankZeroOnly() {
        let r = run(["-n", "3", rank, "stdin", marker], stdin: "alpha\\nbeta\\n")
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertEqual(r.output.split(separator: "\n"), ["ALPHA", "BETA", "stdin closed"])
    }

    func testStartedWithStdinClosed() {
        // Some CI systems start jobs with no stdin at all: rank 0 sees an empty input.
        let (code, out) = runCapturing("/bin/sh", ["-c", "'\(swiftrun)' -n 2 '\(rank)' stdin \(marker) <&-"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(out, "stdin closed\n")
    }

    func testOutputDirEnvironmentAndWorkingDirectory() throws {
        let dir = "/tmp/srtest-out-\(getpid())"
        defer {
            for k in 0..<2 { unlink("\(dir)/rank.\(k).out"); unlink("\(dir)/rank.\(k).err") }
            rmdir(dir)
        }
        setenv("SWIFTRUN_TEST_INHERITED", "yes", 1)
        let r = run(["-n", "2", "-x", "FOO=bar", "-genv", "BAZ", "qux", "--wdir", "/usr", "--output-dir", dir,
                     "/bin/sh", "-c", "echo $PMI_RANK $FOO $BAZ $SWIFTRUN_TEST_INHERITED $(pwd) \(marker); echo oops >&2"])
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertEqual(r.output, "", "output went to the files")
        for k in 0..<2 {
            XCTAssertEqual(try contents("\(dir)/rank.\(k).out"), "\(k) bar qux yes /usr \(marker)\n")
            XCTAssertEqual(try contents("\(dir)/rank.\(k).err"), "oops\n")
        }
    }

    func contents(_ path: String) throws -> String {
        guard let f = fopen(path, "r") else { throw MXError(.system, "cannot open \(path)") }
        defer { fclose(f) }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = fread(&buf, 1, buf.count, f)
        return String(decoding: buf[..<n], as: UTF8.self)
    }

    func testReportBindingsUsesTheRealTopology() throws {
        let cores = try HostTopology.load().cores
        let r = run(["-n", "1", "--report-bindings", "/bin/true", marker])
        XCTAssertEqual(r.code, 0)
        XCTAssertTrue(r.output.contains("rank 0 bound to core 0 (PU \(cores[0].processingUnits.map(String.init).joined(separator: ",")))"), r.output)
        let over = run(["-n", String(cores.count + 1), "--report-bindings", "/bin/true", marker])
        XCTAssertTrue(over.output.contains("rank \(cores.count) not bound"), over.output)
        let bound = run(["-n", "1", "--bind-to", "core", "/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"])
        XCTAssertTrue(bound.output.contains("Cpus_allowed_list:\t\(cores[0].processingUnits.map(String.init).joined(separator: ","))"), bound.output)
        // Bound to a core each, ranks still learn how many CPUs the job shares on the host, so
        // ranks that fit are not taken as oversubscribed (they may spin).
        let told = run(["-n", "1", "--bind-to", "core", "/bin/sh", "-c", "echo cpus=$\(MXDefaults.hostCPUsEnvironment)"])
        XCTAssertTrue(told.output.contains("cpus=\(cmx_usable_cpus())\n"), told.output)
        // So ranks bound to a core each, as many as the cores, move large messages by copy
        // through the ring (both copy at once); one rank more and they take the CMA pull.
        if cores.count >= 2 {
            let fit = run(["-n", String(cores.count), rank, "options", marker])
            for r in 0..<cores.count { XCTAssertTrue(fit.output.contains("rank \(r) local path measured oversubscribed false"), fit.output) }
            let crowded = run(["-n", String(cores.count + 1), rank, "options", marker])
            for r in 0...cores.count { XCTAssertTrue(crowded.output.contains("rank \(r) local path pull oversubscribed true"), crowded.output) }
        }
    }

    func testAHostfileOfThisHost() throws {
        let path = "/tmp/srtest-hostfile-\(getpid())"
        defer { unlink(path) }
        writeFile(path, "# this machine\nlocalhost:2\n")
        let r = run(["-f", path, rank, "ring", marker])
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertTrue(r.output.contains("rank 1 of 2: ring ok"), "no -n: the hostfile's slots")
        let over = run(["-f", path, "-n", "3", rank, "ring", marker])
        XCTAssertEqual(over.code, 2)
        XCTAssertTrue(over.output.contains("3 ranks but \(path) offers 2 slots"), over.output)
        XCTAssertEqual(run(["-f", path, "-n", "3", "--oversubscribe", rank, "ring", marker]).code, 0)
    }

    /// An "ssh" for the ssh launcher's tests: skips ssh's options and the host, runs `body`,
    /// then the command it was given, right here.
    func writeFakeSSH(_ path: String, _ body: String) {
        writeFile(path, """
        #!/bin/bash
        while [ $# -gt 0 ]; do case "$1" in -x) shift ;; -o) shift 2 ;; *) break ;; esac; done
        shift
        \(body)
        exec "$@"

        """, executable: true)
    }

    func testAgentsCombineBarriersPerHostAndStrangersGetNothing() throws {
        // An "ssh" that runs the agent right here, after a stranger tried the job's port with a
        // wrong secret.
        let fake = "/tmp/srtest-fakessh-\(getpid())"
        defer { unlink(fake) }
        writeFakeSSH(fake, """
        addr=$3
        exec 5<>/dev/tcp/${addr%:*}/${addr#*:}; echo "cmd=hello secret=guess host=$5" >&5
        if read -t 2 line <&5; then echo "stranger got: $line" >&2; else echo "stranger got nothing" >&2; fi
        exec 5<&-
        """)
        let program = try buildMPICHProgram()
        // Round robin (--map-by node): MPICH must get a process mapping it can use.
        let r = run(["-v", "--launcher", "ssh", "--launcher-exec", fake, "--host", "hostA:2,hostB:2", "--map-by", "node", program, marker])
        XCTAssertEqual(r.code, 0, r.output)
        XCTAssertEqual(r.output.split(separator: "\n").filter { $0.hasSuffix("sum 6 ok") }.count, 4, r.output)
        XCTAssertEqual(r.output.components(separatedBy: "stranger got nothing").count - 1, 2, r.output)
        XCTAssertFalse(r.output.contains("stranger got: "), r.output)
        let hostBarriers = r.output.split(separator: "\n").filter { $0.contains("barrier for ranks") }
        XCTAssertGreaterThan(hostBarriers.count, 0)
        XCTAssertEqual(hostBarriers.count % 2, 0, "one message per host per barrier")
        XCTAssertFalse(r.output.contains("cmd=barrier_in"), "no rank's barrier_in travels to swiftrun on its own")
        XCTAssertFalse(r.output.contains("cmd=get_maxes"), "agents answer what needs no other host")
    }

    func testAJobEndingDoesNotWaitForAnAgentStillOnItsWay() throws {
        // The local rank fails at once while the other host's "ssh" takes 3 s to get there: the
        // job ends without waiting for that agent, and its launcher is stopped.
        let slow = "/tmp/srtest-slowssh-\(getpid())"
        defer { unlink(slow) }
        writeFakeSSH(slow, """
        trap 'kill $pause 2>/dev/null; exit 143' TERM
        sleep 3 & pause=$!
        wait $pause
        """)
        let r = run(["--launcher-exec", slow, "--host", "localhost:1,slowhost:1", "-n", "2", "/bin/sh", "-c", "exit 1 # \(marker)"])
        XCTAssertEqual(r.code, 1, r.output)
        XCTAssertLessThan(r.seconds, 2.5, "the job did not wait for the late agent: \(r.output)")
    }

    // MARK: failures

    /// PMI as a hostile or broken rank speaks it, served by swiftrun itself and by an agent:
    /// swiftrun never blocks on one rank, and a rank over a limit is cut off and ends the job.
    func testARankThatFloodsPMINeverWedgesSwiftrun() throws {
        let fake = "/tmp/srtest-floodssh-\(getpid())"
        defer { unlink(fake) }
        writeFakeSSH(fake, "")
        for (how, launch) in [("here", ["-n", "1"]), ("through an agent", ["--launcher-exec", fake, "--host", "hostA:1", "-n", "1"])] {
            // Requests without reading the replies, then silence: --timeout still ends the job.
            let unread = run(launch + ["--timeout", "2", "/bin/bash", "-c", "yes cmd=get_maxes | head -n 3000 >&3; sleep 30 # \(marker)"], killAfter: 30)
            XCTAssertEqual(unread.code, LocalJob.timeoutExitCode, "\(how): \(unread.output)")
            XCTAssertTrue(unread.output.contains("timeout: the job ran longer than 2 s"), "\(how): \(unread.output)")
            XCTAssertLessThan(unread.seconds, 6, how)
            // A thousand puts written before any reply is read: every one answered, in order.
            let batch = """
            for i in $(seq 1000); do echo "cmd=put key=k$i value=v$i"; done >&3
            ok=0; for i in $(seq 1000); do read -r l <&3; [ "$l" = "cmd=put_result rc=0" ] && ok=$((ok+1)); done
            echo cmd=get key=k777 >&3; read -r g <&3; echo cmd=finalize >&3; read -r f <&3
            echo "puts $ok, $g, $f # \(marker)"
            """
            let puts = run(launch + ["--timeout", "20", "/bin/bash", "-c", batch], killAfter: 30)
            XCTAssertEqual(puts.code, 0, "\(how): \(puts.output)")
            XCTAssertEqual(puts.output, "puts 1000, cmd=get_result rc=0 value=v777, cmd=finalize_ack rc=0 # \(marker)\n", how)
            // Over the limits: unread replies, a line, the job's key-value space.
            let value = String(repeating: "v", count: PMIServer.valueMax)
            for (script, words) in [("yes cmd=get_maxes | head -n 200000 >&3", "stopped reading its PMI replies (over \(PMIServer.replyQueueMax >> 10) KiB of them wait)"),
                                    ("head -c 16777216 /dev/zero | tr '\\0' x >&3", "sent a PMI line longer than \(PMIServer.lineMax) bytes, the limit (get_maxes: vallen_max=\(PMIServer.valueMax))"),
                                    ("for i in $(seq 20000); do echo cmd=put key=k$i value=\(value); done >&3", PMIServer.kvsFullReason)] {
                let r = run(launch + ["--timeout", "20", "/bin/bash", "-c", "\(script); sleep 30 # \(marker)"], killAfter: 30)
                XCTAssertEqual(r.code, 1, "\(how): \(r.output)")
                XCTAssertTrue(r.output.contains("swiftrun: rank 0 (pid ") && r.output.contains("\(words); cutting it off and ending the job"), "\(how): \(r.output)")
                XCTAssertLessThan(r.seconds, 10, "\(how): \(words)")
            }
        }
    }

    /// A rank that started PMI and ends without finalizing, while the others wait for it in
    /// MPI's own barrier (which swiftrun cannot see): the job ends at once, naming the rank.
    func testARankThatLeavesAfterInitWithoutFinalizingEndsTheJob() throws {
        let program = try buildMPICHProgram()
        let fake = "/tmp/srtest-quitssh-\(getpid())"
        defer { unlink(fake) }
        writeFakeSSH(fake, "")
        let agents = ["--launcher-exec", fake, "--host", "hostA:2,hostB:2"]
        for (args, who) in [(["-n", "3", program, "vanish", marker], "rank 1 (pid "),
                            (["-n", "3", rank, "quit", "1", marker], "rank 1 (pid "),
                            (agents + ["-n", "4", program, "vanish", marker], "rank 1 (pid "),
                            (agents + ["-n", "4", rank, "quit", "3", marker], "rank 3 (pid ")] {
            let r = run(["--timeout", "30"] + args, killAfter: 60)
            XCTAssertEqual(r.code, 1, "\(args): \(r.output)")
            XCTAssertTrue(r.output.contains("swiftrun: \(who)") && r.output.contains("exited with code 0 without finalizing PMI"), "\(args): \(r.output)")
            XCTAssertLessThan(r.seconds, 5, "\(args): it ended at once, not at the timeout")
        }
        // A program that never speaks PMI and exits 0 is a success, as before.
        XCTAssertEqual(run(["-n", "2", "/bin/sh", "-c", "exit 0 # \(marker)"]).code, 0)
    }

    func testARankExitingNonZeroEndsTheJobWithItsCode() {
        let r = run(["-n", "4", rank, "exit", "5", "1", marker])
        XCTAssertEqual(r.code, 5, r.output)
        XCTAssertTrue(r.output.contains("rank 1 (pid "), r.output)
        XCTAssertTrue(r.output.contains("exited with code 5"), r.output)
        XCTAssertLessThan(r.seconds, 3)
    }

    func testARankKilledBySignal() {
        let r = run(["-n", "3", "/bin/sh", "-c", "if [ $PMI_RANK = 2 ]; then kill -9 $$; fi; sleep 30 # \(marker)"])
        XCTAssertEqual(r.code, 128 + 9, r.output)
        XCTAssertTrue(r.output.contains("rank 2 (pid"), r.output)
        XCTAssertTrue(r.output.contains("killed by signal 9 (SIGKILL)"), r.output)
        XCTAssertLessThan(r.seconds, 2, "the sleeping ranks were ended within a second")
    }

    func testARankThatNeverSpokePMIWhileOthersWait() {
        let r = run(["-n", "4", rank, "vanish", "3", marker])
        XCTAssertNotEqual(r.code, 0, r.output)
        XCTAssertTrue(r.output.contains("exited without finalizing"), r.output)
        XCTAssertLessThan(r.seconds, 3)
    }

    func testAbortEndsTheJobWithItsCodeAndMessage() {
        let r = run(["-n", "3", rank, "abort", "9", "2", marker])
        XCTAssertEqual(r.code, 9, r.output)
        XCTAssertTrue(r.output.contains("rank 2 (pid"), r.output)
        XCTAssertTrue(r.output.contains("aborted the job with code 9: rank 2 gives up"), r.output)
        XCTAssertLessThan(r.seconds, 3)
    }

    func testTimeout() {
        let r = run(["--timeout", "1", "-n", "2", "/bin/sh", "-c", "sleep 30 # \(marker)"])
        XCTAssertEqual(r.code, LocalJob.timeoutExitCode)
        XCTAssertTrue(r.output.contains("timeout"), r.output)
        XCTAssertLessThan(r.seconds, 3)
    }

    func testInterruptAndKillOfSwiftrunItself() throws {
        for sig in [SIGINT, SIGTERM, SIGKILL] {
            let job = try ChildProcess.spawn(swiftrun, ["-n", "3", rank, "hang", marker])
            // Wait until all three ranks run.
            let deadline = monotonicNanoseconds() + 20_000_000_000
            while processesWithMarker().count < 4 && monotonicNanoseconds() < deadline { usleep(20_000) }
            XCTAssertEqual(processesWithMarker().count, 4, "swiftrun and three ranks")
            let t0 = monotonicNanoseconds()
            job.signal(sig)
            let outcome = job.wait(seconds: 5)
            XCTAssertEqual(outcome, sig == SIGKILL ? .signalled(SIGKILL) : .exited(128 + sig))
            while !processesWithMarker().isEmpty && monotonicNanoseconds() - t0 < 2_000_000_000 { usleep(10_000) }
            XCTAssertEqual(processesWithMarker(), [], "\(signalName(sig)): every rank is gone")
            XCTAssertLessThan(monotonicNanoseconds() - t0, 1_500_000_000, "\(signalName(sig)): within about a second")
            // The job's backend ends too (it removes its directory as it goes).
            while !leftJobDirectories().isEmpty && monotonicNanoseconds() - t0 < 3_000_000_000 { usleep(10_000) }
        }
    }

    /// The job's backend is a child of swiftrun running the backend's code without an exec
    /// (a fork: no second program to load), shown as the myrback command it stands for; when
    /// it dies mid-job, swiftrun says so, and the job still ends with nothing left behind.
    func testTheJobsBackendIsAForkedMyrbackAndItsDeathIsReported() throws {
        _ = before
        let out = "/tmp/srtest-backend-\(getpid()).out", err = "/tmp/srtest-backend-\(getpid()).err"
        defer { unlink(out); unlink(err) }
        let job = try ChildProcess.spawn("/bin/sh", ["-c", "exec '\(swiftrun)' -n 2 '\(rank)' hang \(marker) >\(out) 2>\(err)"])
        var ended = false
        defer { if !ended { job.signal(SIGKILL); _ = job.wait() } }
        let deadline = monotonicNanoseconds() + 20_000_000_000
        // Both ranks bootstrapped: each opened its endpoint through the backend.
        while ((try? contents(out)) ?? "").components(separatedBy: "ready").count < 3 && monotonicNanoseconds() < deadline { usleep(10_000) }
        XCTAssertEqual(((try? contents(out)) ?? "").components(separatedBy: "ready").count, 3, ((try? contents(out)) ?? "") + ((try? contents(err)) ?? ""))
        let backends = allProcesses().filter { parentAndName(of: $0).map { $0.parent == job.pid && $0.name == "myrback" } ?? false }
        XCTAssertEqual(backends.count, 1, "one backend, a child of swiftrun named myrback")
        let backend = try XCTUnwrap(backends.first)
        let shown = commandLine(of: backend) ?? ""
        XCTAssertTrue(shown.hasPrefix("myrback --socket /tmp/swiftrun-\(job.pid)."), shown)
        XCTAssertTrue(shown.contains("--launcher-pid \(job.pid) --listen-fd 3 --foreground"), shown)
        var exe = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(backend)/exe", &exe, exe.count - 1)
        XCTAssertGreaterThan(n, 0)
        XCTAssertEqual(String(cString: exe), String(cString: realpath(swiftrun, nil)), "swiftrun's own code, not an exec of myrback")
        kill(backend, SIGKILL)
        while !((try? contents(err)) ?? "").contains("before the job ended") && monotonicNanoseconds() < deadline { usleep(10_000) }
        XCTAssertTrue(((try? contents(err)) ?? "").contains("the backend of \(BackendLocation.localHostName()) (myrback, pid \(backend)) was killed by signal 9 (SIGKILL) before the job ended"), ((try? contents(err)) ?? ""))
        job.signal(SIGTERM)
        XCTAssertEqual(job.wait(seconds: 5), .exited(128 + SIGTERM))
        ended = true
        let t0 = monotonicNanoseconds()
        while (!processesWithMarker().isEmpty || !leftJobDirectories().isEmpty) && monotonicNanoseconds() - t0 < 3_000_000_000 { usleep(10_000) }
    }

    func testBadInputIsOneClearLineAndExitCodeTwo() throws {
        let notExecutable = "/tmp/srtest-noexec-\(getpid())"
        writeFile(notExecutable, "#!/bin/sh\n")
        let badHostfile = "/tmp/srtest-badhosts-\(getpid())"
        writeFile(badHostfile, "localhost\nnode2:zero\n")
        let hugeSlots = "/tmp/srtest-hugeslots-\(getpid())"
        writeFile(hugeSlots, "localhost slots=9223372036854775807\n")
        defer { unlink(notExecutable); unlink(badHostfile); unlink(hugeSlots) }
        for (args, words) in [(["--frobnicate", "x"], "unknown option --frobnicate"),
                              (["-n", "0", "/bin/true"], "-n must be a positive number"),
                              (["-n", "2", "/no/such/program"], "/no/such/program: no such file"),
                              (["-n", "2", "no-such-command-\(getpid())"], "command not found"),
                              (["-n", "2", notExecutable], "is not executable"),
                              (["-f", badHostfile, "/bin/true"], "\(badHostfile):2:"),
                              (["--host", "faraway-host:2", "-n", "2", "/bin/true"], "faraway-host"),
                              // Issue 8.6: these crashed (a segfault, then aborts allocating 34 and 800 GB).
                              (["-f", hugeSlots, "/bin/true"], "slots=9223372036854775807 is more than the 8192 ranks a host can hold"),
                              (["--host", "localhost:4294967297", "/bin/true"], "4294967297 slots is more than the 8192 ranks a host can hold"),
                              (["-n", "99999999999", "/bin/true"], "-n 99999999999 is more than the 65536 ranks a job can have"),
                              (["-n", "8193", "--oversubscribe", "/bin/true"], "8193 ranks on "),
                              (["--timeout", "99999999999999999999", "/bin/true"], "is more than a year"),
                              // Issue 8.9: a directory said "no hosts".
                              (["-f", "/tmp", "/bin/true"], "hostfile /tmp is a directory, not a file")] {
            let r = run(args)
            XCTAssertEqual(r.code, 2, "\(args): \(r.output)")
            XCTAssertEqual(r.output.split(separator: "\n").count, 1, "one line: \(r.output)")
            XCTAssertTrue(r.output.hasPrefix("swiftrun: ") && r.output.contains(words), "\(args): \(r.output)")
        }
        XCTAssertEqual(run(["--version"]).code, 0)
        XCTAssertTrue(run(["--help"]).output.contains("usage: swiftrun"))
    }

    func testWhatRanksAndHostfilesSayReachesTheTerminalEscaped() throws {
        // Issue 8.9: PMI lines (in -v logs, abort messages, lines that are not PMI) and
        // hostfile bytes were echoed raw: a rank could clear the screen or retitle the window.
        let script = """
        printf 'hello\\033[2J\\n' >&3
        printf 'cmd=get_maxes junk=\\033]0;pwned\\007\\n' >&3
        read -r reply <&3
        printf 'cmd=abort exitcode=3 message=bye\\033[31m\\302\\233red\\n' >&3
        sleep 30 # \(marker)
        """
        let r = run(["-v", "-n", "1", "/bin/bash", "-c", script])
        XCTAssertEqual(r.code, 3, r.output)
        for words in ["sent a line that is not PMI-1: hello\\x1b[2J", "PMI rank 0: cmd=get_maxes junk=\\x1b]0;pwned\\x07",
                      "aborted the job with code 3: bye\\x1b[31m\\u{9b}red"] {
            XCTAssertTrue(r.output.contains(words), "\(words): \(r.output.debugDescription)")
        }
        let hostfile = "/tmp/srtest-eschosts-\(getpid())"
        defer { unlink(hostfile) }
        writeFile(hostfile, "localhost\nvm\u{1B}]0;pwned\u{07}:2\n")
        let h = run(["-f", hostfile, "/bin/true"])
        XCTAssertEqual(h.code, 2, h.output)
        XCTAssertTrue(h.output.contains(":2: 'vm\\x1b]0;pwned\\x07' is not a valid host name"), h.output.debugDescription)
        for out in [r.output, h.output] {
            XCTAssertFalse(out.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || ($0.value >= 0x7F && $0.value < 0xA0) },
                           "no control character reaches the terminal: \(out.debugDescription)")
        }
    }

    func buildMPICHProgram() throws -> String {
        guard access("/usr/bin/mpicc.mpich", X_OK) == 0 else { throw XCTSkip("mpicc.mpich is not installed (bin/install-deps --all)") }
        let source = #filePath.split(separator: "/").dropLast().joined(separator: "/") + "/Programs/mpi_hello.c"
        let out = "/tmp/srtest-mpi-hello-\(getpid())"
        addTeardownBlock { unlink(out) }
        let (code, text) = runCapturing("/usr/bin/mpicc.mpich", ["-O2", "-o", out, "/" + source])
        guard code == 0 else { throw MXError(.system, "mpicc.mpich failed: \(text)") }
        return out
    }
}
