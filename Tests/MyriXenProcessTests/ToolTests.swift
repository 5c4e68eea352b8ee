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
        // test's connection (a socket and its eventfd). A pipe or a third socket is something
        // it kept from the rank.
        var sockets = 0
        for (fd, target) in descriptors(of: pid) {
            if fd <= 2 {
                XCTAssertEqual(target, "/dev/null", "fd \(fd)")
            } else if target.hasPrefix("socket:") {
                sockets += 1
            } else {
                XCTAssertTrue([dir.socketPath + ".lock", "anon_inode:[eventfd]"].contains(target),
                              "fd \(fd) -> \(target) is not the backend's own")
            }
        }
        XCTAssertEqual(sockets, 2, "the listener and this test's connection only")
        mx.finalize()
    }

    /// A process's descriptors and what each refers to (/proc/PID/fd).
    func descriptors(of pid: Int32) -> [(Int32, String)] {
        var out: [(Int32, String)] = []
        guard let d = opendir("/proc/\(pid)/fd") else { return out }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            guard let fd = Int32(name) else { continue }
            var buf = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
            out.append((fd, n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"))
        }
        return out.sorted { $0.0 < $1.0 }
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
        let (code2, _) = runCapturing(BuiltProducts.path("mx_pingpong"), ["-m", "5:1"])
        XCTAssertEqual(code2, 64, "usage errors exit 64 (EX_USAGE) from the argument parser")
    }
}
