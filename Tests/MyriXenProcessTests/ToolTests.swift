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
