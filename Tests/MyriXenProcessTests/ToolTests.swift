import XCTest
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The tools as users run them.
final class ToolTests: XCTestCase {
    func testBackendStartsOnDemandAndMxInfoShowsEndpoints() throws {
        let dir = try TestBackend(start: false) // a private, empty socket directory
        defer { dir.stop() }
        let env = [MXDefaults.backendPathEnvironment: BuiltProducts.path("myrback")]
        let (code0, out0) = runCapturing(BuiltProducts.path("mx_info"), ["--socket", dir.socketPath, "--no-start"], environment: env)
        XCTAssertNotEqual(code0, 0, "no backend yet, and --no-start: " + out0)
        // The first context starts one.
        let mx = try MXContext(socketPath: dir.socketPath, startBackend: true)
        let pid = try mx.info().backendPID
        XCTAssertTrue(processExists(pid))
        let ep = try mx.openEndpoint(key: 3)
        let (code, out) = runCapturing(BuiltProducts.path("mx_info"), ["--socket", dir.socketPath, "--regions"])
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.contains("Board #0: \(mx.hostname):0"), out)
        XCTAssertTrue(out.contains(NICAddressing.format(ep.nicID)), out)
        XCTAssertTrue(out.contains("1 in use of 32"), out)
        XCTAssertTrue(out.contains(" \(getpid()) "), "the owner pid is listed: " + out)
        ep.close()
        mx.finalize()
        XCTAssertTrue(terminate(pid: pid), "the on-demand backend ends on SIGTERM")
        XCTAssertNotEqual(access(dir.socketPath, F_OK), 0, "and removes its socket")
    }

    /// The socket's directory: myrback makes its own (mode 0700) and removes only that; it uses
    /// an existing directory only if it is a real one of this user's that nobody else can write
    /// to, and then changes nothing in its mode. Anything else is refused with its reason, by
    /// myrback and, before starting one, by a frontend.
    func testMyrbackUsesOnlyASocketDirectoryOfItsOwnAndChangesNoOther() throws {
        let scratch = try TestBackend(start: false) // a private directory (0700) for the cases
        let base = scratch.directory
        defer { _ = runCapturing("/bin/rm", ["-rf", base]); scratch.stop() }
        func mode(_ path: String) -> mode_t? {
            var st = stat()
            return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
        }
        func entries(_ dir: String) -> [String] {
            runCapturing("/bin/ls", ["-A", dir]).output.split(separator: "\n").map(String.init)
        }
        func refused(_ socket: String, _ reason: String, file: StaticString = #filePath, line: UInt = #line) {
            // A myrback that wrongly accepts serves until the timeout ends it (exit code 124).
            let (code, out) = runCapturing("/usr/bin/timeout", ["10", BuiltProducts.path("myrback"), "--foreground", "--socket", socket])
            XCTAssertEqual(code, 1, "myrback must refuse \(socket): \(out)", file: file, line: line)
            XCTAssertTrue(out.contains(reason), "\(socket): \(out)", file: file, line: line)
        }
        /// Serves at `socket` until told to stop; returns after SIGTERM, with the exit status.
        func serve(_ socket: String, _ extra: [String] = [], whileRunning check: () throws -> Void = {}) throws {
            let p = try ChildProcess.spawnTied(BuiltProducts.path("myrback"), ["--foreground", "--socket", socket] + extra)
            defer { if p.poll() == nil { p.signal(SIGKILL); _ = p.wait() } }
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while (try? MXContext(socketPath: socket, startBackend: false))?.finalize() == nil {
                XCTAssertNil(p.poll(), "myrback ended at start")
                guard p.poll() == nil, monotonicNanoseconds() < deadline else { return XCTFail("no backend at \(socket)") }
                usleep(5_000)
            }
            try check()
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(seconds: 5), .exited(0))
        }
        let real = base + "/real", link = base + "/link", shared = base + "/shared", own = base + "/own"
        for d in [real, shared, own] { XCTAssertEqual(mkdir(d, 0o755), 0) }
        chmod(shared, 0o1777) // as /tmp is
        XCTAssertEqual(symlink(real, link), 0)
        writeFile(own + "/data.txt", "keep me\n")

        // A symbolic link (a planted /tmp/myrixen-<uid> -> /etc, a link in --socket's path).
        refused(link + "/x.sock", "\(link), the directory of the backend's socket, is a symbolic link")
        refused(link + "//x.sock", "\(link), the directory of the backend's socket, is a symbolic link")
        XCTAssertEqual(mode(real), 0o755, "the link's target keeps its mode")
        XCTAssertEqual(entries(real), [], "and nothing is made in it")
        // A directory others can write to (MYRIXEN_SOCKET=/tmp/x.sock), even one of this user's.
        refused(shared + "/x.sock", "\(shared), the directory of the backend's socket, is writable by other users (mode 1777)")
        XCTAssertEqual(mode(shared), 0o1777)
        XCTAssertEqual(entries(shared), [])
        // A directory of this user's in one others can write to that is not sticky: another user
        // could move it away after the check and put a symbolic link in its place. Refused,
        // whether it exists, is still to be made (nothing is made), or is further down.
        let open = base + "/open"
        XCTAssertEqual(mkdir(open, 0o755), 0)
        chmod(open, 0o777)
        for d in [open + "/mine", open + "/sub", open + "/sub/mine"] { XCTAssertEqual(mkdir(d, d.hasSuffix("sub") ? 0o755 : 0o700), 0) }
        let above = "a directory above \(open)/mine (the directory of the backend's socket), is writable by other users and not sticky (mode 777)"
        refused(open + "/mine/x.sock", "\(open), " + above)
        refused(open + "/new/x.sock", "\(open), a directory above \(open)/new (the directory of the backend's socket), is writable by other users and not sticky (mode 777)")
        refused(open + "/sub/mine/x.sock", "\(open), a directory above \(open)/sub/mine (the directory of the backend's socket), is writable by other users and not sticky")
        refused(link + "/../open/mine/x.sock", "chmod go-w \(open)") // named as it resolves
        XCTAssertEqual(entries(open), ["mine", "sub"], "nothing is made")
        XCTAssertEqual(entries(open + "/mine"), [])
        XCTAssertEqual(mode(open), 0o777)
        XCTAssertEqual(mode(open + "/mine"), 0o700)
        // Another user's directory.
        if getuid() == 0 {
            let theirs = base + "/theirs"
            XCTAssertEqual(mkdir(theirs, 0o700), 0)
            XCTAssertEqual(chown(theirs, 65534, 65534), 0)
            refused(theirs + "/x.sock", "\(theirs), the directory of the backend's socket, belongs to uid 65534, not to this user")
            XCTAssertEqual(mode(theirs), 0o700)
            XCTAssertEqual(entries(theirs), [])
        }
        // Not a directory; a missing parent; a file where the socket would go.
        refused(own + "/data.txt/x.sock", "\(own)/data.txt, the directory of the backend's socket, is not a directory")
        refused(base + "/no/such/x.sock", "cannot create \(base)/no/such, the directory of the backend's socket: \(base)/no does not exist")
        XCTAssertNil(mode(base + "/no"), "no parent is made")
        refused(own + "/data.txt", "\(own)/data.txt exists and is not a socket; the backend does not remove it")
        XCTAssertEqual(runCapturing("/bin/cat", [own + "/data.txt"]).output, "keep me\n")

        // A directory of this user's that only it can write to: used as it is, and kept.
        try serve(own + "/x.sock") { XCTAssertEqual(mode(own), 0o755) }
        XCTAssertEqual(mode(own), 0o755)
        XCTAssertEqual(entries(own), ["data.txt"], "only the socket and its lock went")
        // In a sticky directory others can write to (as /tmp is), one of this user's is fine:
        // only its owner may rename it there.
        let inSticky = shared + "/mine"
        XCTAssertEqual(mkdir(inSticky, 0o700), 0)
        try serve(inSticky + "/x.sock") { XCTAssertEqual(mode(inSticky), 0o700) }
        XCTAssertEqual(entries(inSticky), [])
        XCTAssertEqual(rmdir(inSticky), 0)
        // A missing directory: made private, then removed with the backend.
        let made = base + "/made"
        try serve(made + "/x.sock") {
            XCTAssertEqual(mode(made), 0o700)
            XCTAssertEqual(Set(entries(made)), ["x.sock", "x.sock.lock"])
        }
        XCTAssertNil(mode(made), "the directory the backend made goes with it")
        // A launcher's job directory: removed on request, but only when empty.
        let job = base + "/job"
        XCTAssertEqual(mkdir(job, 0o700), 0)
        try serve(own + "/x.sock", ["--remove-empty-directory"])
        XCTAssertEqual(entries(own), ["data.txt"], "a directory with something else in it stays")
        try serve(job + "/x.sock", ["--remove-empty-directory"])
        XCTAssertNil(mode(job), "an empty one goes when asked")

        // A frontend refuses the same directories at once instead of starting a backend there.
        let start = monotonicNanoseconds()
        XCTAssertThrowsError(try MXContext(socketPath: link + "/x.sock", startBackend: true)) { e in
            XCTAssertEqual((e as? MXError)?.code, .accessDenied)
            XCTAssertTrue("\(e)".contains("is a symbolic link"), "\(e)")
        }
        XCTAssertThrowsError(try MXContext(socketPath: shared + "/x.sock", startBackend: true)) { e in
            XCTAssertTrue("\(e)".contains("is writable by other users"), "\(e)")
        }
        XCTAssertThrowsError(try MXContext(socketPath: open + "/mine/x.sock", startBackend: true)) { e in
            XCTAssertEqual((e as? MXError)?.code, .accessDenied)
            XCTAssertTrue("\(e)".contains(above), "\(e)")
        }
        XCTAssertLessThan(monotonicNanoseconds() - start, 2_000_000_000, "refused, not a backend waited for")
        XCTAssertEqual(mode(real), 0o755)
        XCTAssertEqual(mode(shared), 0o1777)
        XCTAssertEqual(entries(real) + entries(shared), [], "no backend started in them")
    }

    /// Under mpiexec.hydra the first rank starts the backend on demand. The daemon keeps no
    /// descriptor of that rank (hydra waits for end-of-file on the rank's pipes), so the job
    /// ends as soon as its ranks do, not when the backend idles out 10 s later.
    func testABackendStartedOnDemandUnderHydraKeepsNothingOfTheRank() throws {
        guard access("/usr/bin/mpiexec.hydra", X_OK) == 0 else { throw XCTSkip("mpiexec.hydra is not installed") }
        let dir = try TestBackend(start: false) // a fresh private socket: no backend runs there yet
        defer { dir.stop() }
        let env = [MXDefaults.socketEnvironment: dir.socketPath, MXDefaults.backendPathEnvironment: BuiltProducts.path("myrback")]
        let start = monotonicNanoseconds()
        let (code, out) = runCapturing("/usr/bin/timeout", ["60", "/usr/bin/mpiexec.hydra", "-n", "2", BuiltProducts.path("hello")],
                                       environment: env)
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        XCTAssertEqual(code, 0, out)
        for r in 0..<2 { XCTAssertTrue(out.contains("hello from rank \(r) of 2"), out) }
        XCTAssertLessThan(seconds, Double(MXDefaults.onDemandIdleSeconds) / 2,
                          "the job waited for the on-demand backend (idle exit after \(MXDefaults.onDemandIdleSeconds) s)")
        guard let mx = try? MXContext(socketPath: dir.socketPath, startBackend: false) else {
            return XCTFail("the backend the ranks started is gone already")
        }
        let pid = try mx.info().backendPID
        defer { XCTAssertTrue(terminate(pid: pid)) }
        // What the daemon holds: stdio on /dev/null, its lock, its listening socket and this
        // test's connection (a socket and its eventfd), its epoll set and its spare descriptor
        // (a duplicate of the epoll set's). A pipe or a third socket is something it kept from
        // the rank.
        var sockets = 0
        for (fd, target) in descriptors(of: pid) {
            if fd <= 2 {
                XCTAssertEqual(target, "/dev/null", "fd \(fd)")
            } else if target.hasPrefix("socket:") {
                sockets += 1
            } else {
                XCTAssertTrue([dir.socketPath + ".lock", "anon_inode:[eventfd]", "anon_inode:[eventpoll]"].contains(target),
                              "fd \(fd) -> \(target) is not the backend's own")
            }
        }
        XCTAssertEqual(sockets, 2, "the listener and this test's connection only")
        mx.finalize()
    }

    func testSocketActivationServesTheInheritedSocketAndRefusesAnythingElse() throws {
        let dir = try TestBackend(start: false)
        defer { dir.stop() }
        // Not a listening socket (the shell's stdin, here a pipe or /dev/null): refused.
        let (code, out) = runCapturing(BuiltProducts.path("myrback"), ["--socket", dir.socketPath, "--listen-fd", "0"])
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue(out.contains("descriptor 0 is not a listening Unix seqpacket socket"), out)
        XCTAssertTrue(runCapturing(BuiltProducts.path("myrback"), ["--listen-fd", "3"]).output.contains("--listen-fd needs --socket"))
        // The socket a launcher bound: a frontend connects before the backend runs, and is served.
        let listener = try BackendLocation.listen(at: dir.socketPath)
        let backend = try ChildProcess.spawnTied(BuiltProducts.path("myrback"), ["--socket", dir.socketPath, "--listen-fd", "3", "--foreground"],
                                                 passing: listener, as: 3)
        close(listener)
        var ended = false
        defer { if !ended { backend.signal(SIGKILL); _ = backend.wait() } }
        let mx = try MXContext(socketPath: dir.socketPath, startBackend: false)
        let ep = try mx.openEndpoint()
        XCTAssertEqual(try mx.info().endpoints.count, 1)
        ep.close()
        mx.finalize()
        backend.signal(SIGTERM)
        let outcome = backend.wait(seconds: 5)
        ended = outcome != nil
        XCTAssertEqual(outcome, .exited(0))
        XCTAssertNotEqual(access(dir.socketPath, F_OK), 0, "the backend removed the socket it was given")
    }

    func testPingpongPrintsOSUStyleRows() throws {
        let dir = try TestBackend(start: false)
        defer { dir.stop() }
        let (code, out) = runCapturing(BuiltProducts.path("mx_pingpong"),
                                       ["-m", "1:65536", "-i", "20", "-x", "2", "--validate", "--socket", dir.socketPath],
                                       environment: [MXDefaults.backendPathEnvironment: BuiltProducts.path("myrback")])
        XCTAssertEqual(code, 0, out)
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("# Size          Latency (us)  Bandwidth (MB/s)"), out)
        let rows = lines.filter { !$0.hasPrefix("#") }
        XCTAssertEqual(rows.count, 17, out)
        for (k, row) in rows.enumerated() {
            XCTAssertEqual(row.count, 46, "%-10d%18.2f%18.2f: \(row)")
            XCTAssertEqual(Int(row.prefix(10).trimmingCharacters(in: .whitespaces)), 1 << k)
            let lat = Double(row.dropFirst(10).prefix(18).trimmingCharacters(in: .whitespaces)) ?? -1
            let bw = Double(row.dropFirst(28).trimmingCharacters(in: .whitespaces)) ?? -1
            XCTAssertGreaterThan(lat, 0)
            XCTAssertGreaterThan(bw, 0)
        }
        // The backend it started on demand is ended by its pid.
        if let mx = try? MXContext(socketPath: dir.socketPath, startBackend: false) {
            let pid = try mx.info().backendPID
            mx.finalize()
            XCTAssertTrue(terminate(pid: pid))
        }
    }

    func testKillingPingpongLeavesNothingBehind() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let run = try ChildProcess.spawn(BuiltProducts.path("mx_pingpong"),
                                         ["-m", "8:8", "-i", "100000000", "--measure", "latency", "--socket", backend.socketPath])
        let mx = try backend.context()
        defer { mx.finalize() }
        // Both processes have their endpoint open once the run is under way.
        var owners: [Int32] = []
        let deadline = monotonicNanoseconds() + 20_000_000_000
        while owners.count < 2 && monotonicNanoseconds() < deadline {
            owners = try mx.info().endpoints.map(\.ownerPID)
            usleep(10_000)
        }
        XCTAssertEqual(owners.count, 2)
        let responder = try XCTUnwrap(owners.first { $0 != run.pid })
        run.signal(SIGKILL)
        XCTAssertEqual(run.wait(), .signalled(SIGKILL))
        let killed = monotonicNanoseconds()
        while processExists(responder) && monotonicNanoseconds() - killed < 2_000_000_000 { usleep(5_000) }
        XCTAssertFalse(processExists(responder), "the second process ends with the first")
        while try mx.info().endpoints.count > 0 && monotonicNanoseconds() - killed < 2_000_000_000 { usleep(5_000) }
        XCTAssertEqual(try mx.info().endpoints.count, 0, "and the backend reclaimed both endpoints")
    }

    func testMyrbackRejectsBadOptionsClearly() {
        let (code, out) = runCapturing(BuiltProducts.path("myrback"), ["--boards", "0", "--socket", "/tmp/unused-\(getpid())/s.sock"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("--boards must be 1...32, not 0"), out)
        let (code1, out1) = runCapturing(BuiltProducts.path("myrback"), ["--max-connections", "0", "--socket", "/tmp/unused-\(getpid())/s.sock"])
        XCTAssertNotEqual(code1, 0)
        XCTAssertTrue(out1.contains("--max-connections must be 1 to \(MXLimits.maxConnections), not 0"), out1)
        // A host name ends up in every rank's endpoint card: it must be one word.
        for bad in ["", "two words", "a/b"] {
            let (c, o) = runCapturing(BuiltProducts.path("myrback"), ["--hostname", bad, "--socket", "/tmp/unused-\(getpid())/s.sock"])
            XCTAssertNotEqual(c, 0)
            XCTAssertTrue(o.contains("--hostname '\(bad)' is not a host name"), o)
        }
        let (code2, _) = runCapturing(BuiltProducts.path("mx_pingpong"), ["-m", "5:1"])
        XCTAssertEqual(code2, 64, "usage errors exit 64 (EX_USAGE) from the argument parser")
    }
}
