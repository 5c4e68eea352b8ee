import XCTest
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A user's own package depends on this one by path and on its `MPI` product, builds its
/// executable, and runs it with swiftrun: exactly the lines docs/api.md shows.
final class ExternalPackageTests: XCTestCase {
    func testAPackageOutsideTheTreeBuildsAgainstMPIAndRunsUnderSwiftrun() throws {
        let repo = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        var template = Array("/tmp/srtest-userpkg-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
        // SwiftPM keeps its lock files for the package's .build in /tmp, named after its path.
        let locks = "/tmp/" + dir.replacingOccurrences(of: "/", with: "_") + "_"
        defer { _ = runCapturing("/bin/sh", ["-c", "rm -rf '\(dir)' '\(locks)'*.lock"]) }
        mkdir("\(dir)/Sources", 0o755)
        mkdir("\(dir)/Sources/greeter", 0o755)
        writeFile("\(dir)/Package.swift", """
        // swift-tools-version:6.0
        import PackageDescription

        let package = Package(
            name: "greeter",
            dependencies: [.package(path: "\(repo)")],
            targets: [
                .executableTarget(name: "greeter", dependencies: [.product(name: "MPI", package: "\(repo.split(separator: "/").last!)")]),
            ]
        )

        """)
        writeFile("\(dir)/Sources/greeter/main.swift", """
        import MPI

        let mpi = try MPI.initialize()
        defer { mpi.finalize() }
        let world = mpi.world
        if world.rank == 0 {
            for _ in 1..<world.size {
                let (text, status) = try world.receive(UInt8.self, from: .any, tag: 1)
                print("rank 0 heard: \\(String(decoding: text, as: UTF8.self)) (from \\(status.source))")
            }
        } else {
            try world.send(Array("hello from \\(world.rank)".utf8), to: 0, tag: 1)
        }

        """)
        let (code, out) = runCapturing("/bin/sh", ["-c", "cd \(dir) && swift build 2>&1 | tail -5"])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("Build complete"), out)
        let (runCode, runOut) = runCapturing(BuiltProducts.path("swiftrun"), ["-n", "3", "\(dir)/.build/debug/greeter"])
        XCTAssertEqual(runCode, 0, runOut)
        XCTAssertTrue(runOut.contains("rank 0 heard: hello from 1 (from 1)") && runOut.contains("rank 0 heard: hello from 2 (from 2)"), runOut)
    }
}
