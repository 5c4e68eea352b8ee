import XCTest
@testable import Launcher
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Which job directories a swiftrun removes as stale, in a private directory standing in for
/// /tmp: only ours, only real directories, only those whose recorded owner is gone.
final class JobDirectoryTests: XCTestCase {
    var base = ""

    override func setUpWithError() throws {
        base = "/tmp/srtest-jobdirs-\(getpid())"
        XCTAssertEqual(mkdir(base, 0o700), 0)
        addTeardownBlock { [base] in _ = runCapturing("/bin/rm", ["-rf", base]) }
    }

    func exists(_ path: String) -> Bool { var st = stat(); return lstat(path, &st) == 0 }

    /// A directory as swiftrun makes them, with a file and a socket inside.
    func jobDirectory(_ name: String) -> String {
        let path = "\(base)/\(name)"
        XCTAssertEqual(mkdir(path, 0o700), 0)
        writeFile(path + "/myrback-0.sock.lock", "")
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in Array((path + "/agents.sock").utf8).enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        XCTAssertEqual(rc, 0)
        close(fd)
        return path
    }

    func testOnlyDirectoriesOfOursWhoseOwnerIsGoneAreRemoved() throws {
        let me = getpid()
        let myStart = try XCTUnwrap(JobDirectory.startTime(of: me))
        // A process that ended but was not reaped yet (a swiftrun killed with SIGKILL whose
        // parent has not looked yet) is gone: a zombie.
        let child = try ChildProcess.spawn("/bin/sleep", ["30"])
        let childStart = try XCTUnwrap(JobDirectory.startTime(of: child.pid))
        child.signal(SIGKILL)
        var info = siginfo_t()
        XCTAssertEqual(waitid(P_PID, id_t(child.pid), &info, WEXITED | WNOWAIT), 0)
        XCTAssertNil(JobDirectory.startTime(of: child.pid), "a zombie does not run")
        defer { _ = child.wait() }

        let boot = try XCTUnwrap(JobDirectory.thisBoot)
        XCTAssertEqual(boot, String(try XCTUnwrap(JobDirectory.readSmallFile("/proc/sys/kernel/random/boot_id")).prefix(8)))
        let live = try JobDirectory.make(in: base)
        XCTAssertTrue(live.hasPrefix("\(base)/swiftrun-\(me).\(myStart).\(boot)-"), live)
        // Another boot's directory whose pid and start time happen to be ours: its owner is gone
        // (no wall clock is asked: stepping it must not make a live job's directory look old).
        let earlierBoot = String(boot.dropLast()) + (boot.hasSuffix("0") ? "1" : "0")
        let otherBoot = jobDirectory("swiftrun-\(me).\(myStart).\(earlierBoot)-gggggg")
        let zombie = jobDirectory("swiftrun-\(child.pid).\(childStart).\(boot)-aaaaaa")
        let reused = jobDirectory("swiftrun-\(me).\(myStart + 1).\(boot)-bbbbbb") // our pid, another start: pid reuse
        let nobody = jobDirectory("swiftrun-999999999.1.\(boot)-cccccc")
        let oldStyle = jobDirectory("swiftrun-dddddd") // no owner recorded: not ours to judge
        let noBoot = jobDirectory("swiftrun-\(child.pid).\(childStart)-hhhhhh") // no boot recorded: not a name of ours
        let badBoot = jobDirectory("swiftrun-\(child.pid).\(childStart).NOTHEX00-jjjjjj") // not a name of ours
        // A symlink in its place is not followed: what it points to stays, and so does it.
        let target = jobDirectory("elsewhere")
        let link = "\(base)/swiftrun-\(child.pid).\(childStart).\(boot)-eeeeee"
        XCTAssertEqual(symlink(target, link), 0)
        // What tests count as leftovers with other jobs about: only directories whose owner is gone.
        let all = [live, otherBoot, zombie, reused, nobody, link].map { String($0.split(separator: "/").last!) }
        XCTAssertEqual(JobDirectory.names(in: base), Set(all))
        XCTAssertEqual(JobDirectory.ownerless(in: base), Set([otherBoot, zombie, reused, nobody, link].map { String($0.split(separator: "/").last!) }))
        var removed = JobDirectory.removeStale(in: base)
        if getuid() == 0 {
            // Another user's directory is left alone, whoever its owner was.
            let theirs = jobDirectory("swiftrun-\(child.pid).\(childStart).\(boot)-ffffff")
            XCTAssertEqual(chown(theirs, 65534, 65534), 0)
            removed += JobDirectory.removeStale(in: base)
            XCTAssertTrue(exists(theirs + "/agents.sock"), "another user's directory is not touched")
        }
        XCTAssertEqual(Set(removed), [otherBoot, zombie, reused, nobody])
        for gone in [otherBoot, zombie, reused, nobody] { XCTAssertFalse(exists(gone), gone) }
        XCTAssertTrue(exists(live), "its owner (this process) runs")
        XCTAssertTrue(exists(oldStyle + "/agents.sock") && exists(badBoot + "/agents.sock") && exists(noBoot + "/agents.sock"))
        XCTAssertTrue(exists(link) && exists(target + "/agents.sock") && exists(target + "/myrback-0.sock.lock"), "the symlink is not followed")
        // The owner removes its own directory, whatever is in it.
        writeFile(live + "/myrback-0.sock.lock", "")
        XCTAssertEqual(mkdir(live + "/sub", 0o700), 0)
        XCTAssertFalse(JobDirectory.remove(live), "a directory inside is left, so the directory stays")
        XCTAssertEqual(rmdir(live + "/sub"), 0)
        XCTAssertTrue(JobDirectory.remove(live))
        XCTAssertFalse(exists(live))
    }
}
