import XCTest
import Launcher
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The ssh launcher for real: two "VMs" (network namespaces) each running an OpenSSH server
/// the test starts with a host key and a client key it makes, and a third namespace swiftrun
/// runs in, all on one bridge of their own. swiftrun reaches each VM by ssh, its agent there
/// calls back, and the ranks run on the VMs.
final class SSHClusterTests: XCTestCase {
    var dir = ""
    var namespaces: [String] = []
    var sshds: [ChildProcess] = []
    var hostfile = ""
    var ssh = ""
    let subnet = "10.202.\(getpid() % 200 + 20)"
    let swiftrun = BuiltProducts.path("swiftrun")
    let rank = BuiltProducts.path("LauncherTestRank")
    var launchNS: String { namespaces[0] }
    var createdRunSSHD = false

    func sh(_ command: String) throws {
        let (code, out) = runCapturing("/bin/sh", ["-c", command])
        guard code == 0 else { throw MXError(.system, "\(command): \(out)") }
    }

    override func setUpWithError() throws {
        // Counted are directories whose owner is gone: a job running beside the tests is no leftover.
        let jobDirectoriesBefore = JobDirectory.names()
        addTeardownBlock {
            XCTAssertEqual(JobDirectory.ownerless().subtracting(jobDirectoriesBefore), [], "no job directory outlives its job")
        }
        guard getuid() == 0, access("/usr/sbin/sshd", X_OK) == 0, access("/usr/bin/ssh", X_OK) == 0 else {
            throw XCTSkip("needs root, OpenSSH's server and client (bin/install-deps --all)")
        }
        let tag = "\(getpid() % 100_000)"
        var template = Array("/tmp/srtest-ssh-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        namespaces = ["mxsl\(tag)", "mxsa\(tag)", "mxsb\(tag)"]
        addTeardownBlock { [unowned self] in self.teardownCluster() }
        for ns in namespaces { try sh("ip netns add \(ns) && ip -n \(ns) link set lo up") }
        try sh("ip -n \(launchNS) link add mxbr type bridge && ip -n \(launchNS) addr add \(subnet).10/24 dev mxbr && ip -n \(launchNS) link set mxbr up")
        for (k, vm) in namespaces.dropFirst().enumerated() {
            let a = "mxsv\(k)\(tag)", b = "mxsp\(k)\(tag)"
            try sh("ip link add \(a) type veth peer name \(b) && ip link set \(a) netns \(vm) && ip link set \(b) netns \(launchNS)")
            try sh("ip -n \(launchNS) link set \(b) master mxbr up && ip -n \(vm) addr add \(subnet).\(k + 1)/24 dev \(a) && ip -n \(vm) link set \(a) up")
        }
        // Keys and servers.
        try sh("ssh-keygen -q -t ed25519 -N '' -f \(dir)/client && ssh-keygen -q -t ed25519 -N '' -f \(dir)/hostkey && cp \(dir)/client.pub \(dir)/authorized_keys")
        if access("/run/sshd", F_OK) != 0 { try sh("mkdir -p /run/sshd"); createdRunSSHD = true }
        for (k, vm) in namespaces.dropFirst().enumerated() {
            let config = "\(dir)/sshd_config_\(k)"
            writeFile(config, """
            ListenAddress \(subnet).\(k + 1)
            HostKey \(dir)/hostkey
            PidFile \(dir)/sshd_\(k).pid
            AuthorizedKeysFile \(dir)/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no

            """)
            // Its log goes to the test's folder (exec: the pid stays sshd's).
            sshds.append(try ChildProcess.spawn("/bin/sh", ["-c", "exec /usr/sbin/ip netns exec \(vm) /usr/sbin/sshd -D -e -f \(config) > \(dir)/sshd_\(k).log 2>&1"]))
        }
        ssh = "\(dir)/ssh"
        writeFile(ssh, "#!/bin/sh\nexec /usr/bin/ssh -i \(dir)/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 \"$@\"\n", executable: true)
        hostfile = "\(dir)/hosts"
        writeFile(hostfile, "\(subnet).1 slots=2\n\(subnet).2 slots=2\n")
        // Wait until both servers answer.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        for k in 1...2 {
            while runCapturing("/usr/sbin/ip", ["netns", "exec", launchNS, ssh, "-o", "BatchMode=yes", "\(subnet).\(k)", "true"]).status != 0 {
                guard monotonicNanoseconds() < deadline else { throw MXError(.system, "sshd on \(subnet).\(k) did not answer") }
                usleep(50_000)
            }
        }
    }

    func teardownCluster() {
        for p in sshds { p.signal(SIGTERM); if p.wait(seconds: 3) == nil { p.signal(SIGKILL); _ = p.wait() } }
        for ns in namespaces { _ = runCapturing("/bin/sh", ["-c", "ip netns del \(ns)"]) }
        _ = runCapturing("/bin/rm", ["-rf", dir])
        if createdRunSSHD { rmdir("/run/sshd") }
    }

    func swiftrunInLaunchNamespace(_ args: [String]) -> (Int32, String) {
        runCapturing("/usr/sbin/ip", ["netns", "exec", launchNS, swiftrun, "--launcher-exec", ssh] + args)
    }

    func testRanksRunOnTwoHostsReachedBySSH() {
        let (code, out) = swiftrunInLaunchNamespace(["-f", hostfile, "-l", "--report-bindings", rank, "where"])
        XCTAssertEqual(code, 0, out)
        var nics: [String: Set<Substring>] = [:]
        for r in 0..<4 {
            let host = "\(subnet).\(r / 2 + 1)"
            guard let l = out.split(separator: "\n").first(where: { $0.hasPrefix("[\(r)] rank \(r) on \(host) nic ") }) else {
                return XCTFail("rank \(r) did not report from \(host): \(out)")
            }
            XCTAssertTrue(l.contains(" ip \(host) "), "rank \(r) runs on \(host): \(l)")
            nics[host, default: []].insert(l.split(separator: " ")[6])
            XCTAssertTrue(out.contains("[\(host):"), "binding report from \(host): \(out)")
        }
        XCTAssertEqual(Set(nics.values.map(\.count)), [1])
        XCTAssertNotEqual(nics["\(subnet).1"], nics["\(subnet).2"], "each host has its own backend and NIC ids")
    }

    func testARemoteFailureEndsTheJobAndStdinReachesARemoteRankZero() {
        let (code, out) = swiftrunInLaunchNamespace(["-f", hostfile, rank, "exit", "6", "3"])
        XCTAssertEqual(code, 6, out)
        XCTAssertTrue(out.contains("rank 3 (pid ") && out.contains("on \(subnet).2 exited with code 6"), out)
        let (code2, out2) = runCapturing("/bin/sh", ["-c", "printf 'hi there\\n' | ip netns exec \(launchNS) \(swiftrun) --launcher-exec \(ssh) -f \(hostfile) -n 2 \(rank) stdin"])
        XCTAssertEqual(code2, 0, out2)
        XCTAssertEqual(out2.split(separator: "\n"), ["HI THERE", "stdin closed"])
    }

    func testKillingSwiftrunEndsTheRemoteRanks() throws {
        let job = try ChildProcess.spawn("/usr/sbin/ip", ["netns", "exec", launchNS, swiftrun, "--launcher-exec", ssh, "-f", hostfile, rank, "hang"])
        // Four ranks run once four "ready" processes exist (ranks are LauncherTestRank hang).
        let deadline = monotonicNanoseconds() + 20_000_000_000
        func hangers() -> Int { runCapturing("/bin/sh", ["-c", "ps -eo args | grep -c '^\(rank) hang'"]).output.split(separator: "\n").first.flatMap { Int($0) } ?? 0 }
        while hangers() < 4 && monotonicNanoseconds() < deadline { usleep(50_000) }
        XCTAssertEqual(hangers(), 4)
        job.signal(SIGKILL)
        _ = job.wait()
        let t0 = monotonicNanoseconds()
        while hangers() > 0 && monotonicNanoseconds() - t0 < 3_000_000_000 { usleep(20_000) }
        XCTAssertEqual(hangers(), 0, "each agent saw swiftrun go and killed its ranks")
    }

    func testTheCallersEnvironmentDirectoryAndExactBytesReachRemoteRanks() throws {
        let out = "\(dir)/bytes.out"
        let cwd = String(cString: getcwd(nil, 0))
        let script = "\(dir)/show.sh"
        writeFile(script, "#!/bin/sh\nprintf '%s|%s\\n' \"$SRTEST_VAR\" \"$(pwd)\"\nprintf '\\001\\377\\200\\n'\n", executable: true)
        let (code, text) = runCapturing("/bin/sh", ["-c", "ip netns exec \(launchNS) \(swiftrun) --launcher-exec \(ssh) -f \(hostfile) -n 1 \(script) > \(out)"],
                                        environment: ["SRTEST_VAR": "hello there"])
        XCTAssertEqual(code, 0, text)
        guard let f = fopen(out, "r") else { return XCTFail("no output") }
        defer { fclose(f) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = fread(&bytes, 1, bytes.count, f)
        XCTAssertEqual(Array(bytes[..<n]), Array("hello there|\(cwd)\n".utf8) + [1, 255, 128, 10], "environment, working directory and bytes arrive intact")
    }
}
