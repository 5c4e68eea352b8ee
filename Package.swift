// swift-tools-version:6.0
// MyriXen: MX-style user-level messaging for clusters of (emulated) Xen VMs, with an MPI stack on top.
import PackageDescription

// The programs users run link Swift's runtime and standard library statically in release builds:
// a job starts its ranks, and loading and relocating the shared Swift libraries was the
// largest part of a short job's launch. They are not position-independent either: the tens of
// thousands of relative relocations of a static Swift runtime are resolved at link time, not
// at every start (docs/performance.md, "Launch").
let staticRuntime: [LinkerSetting] = [.unsafeFlags(["-static-stdlib", "-Xclang-linker", "-no-pie"], .when(platforms: [.linux], configuration: .release))]
// swift-argument-parser links FoundationEssentials, whose static archive needs these after it.
let staticRuntimeWithFoundation: [LinkerSetting] = staticRuntime + [
    .unsafeFlags(["-Xlinker", "--start-group", "-lFoundationEssentials", "-l_FoundationCollections",
                  "-l_FoundationCShims", "-lswiftSynchronization", "-Xlinker", "--end-group"],
                 .when(platforms: [.linux], configuration: .release)),
]

let package = Package(
    name: "MyriXen",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "MyriXen", targets: ["MyriXen"]),
        .executable(name: "myrback", targets: ["myrback"]),
        .executable(name: "mx_info", targets: ["mx_info"]),
        .executable(name: "mx_pingpong", targets: ["mx_pingpong"]),
        .executable(name: "swiftrun", targets: ["swiftrun"]),
        .library(name: "PMI", targets: ["PMI"]),
        .library(name: "Bootstrap", targets: ["Bootstrap"]),
        .library(name: "MPI", targets: ["MPI"]),
        .executable(name: "hello", targets: ["hello"]),
        .executable(name: "ring", targets: ["ring"]),
        .executable(name: "pi", targets: ["pi"]),
        .executable(name: "halo", targets: ["halo"]),
        .executable(name: "objects", targets: ["objects"]),
        .executable(name: "stats", targets: ["stats"]),
        .executable(name: "mpi_pingpong", targets: ["mpi_pingpong"]),
        .executable(name: "mpibench", targets: ["mpibench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // mpibench's percentiles: every call's time in a histogram, merged across ranks.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // hwloc from Debian's libhwloc-dev, found through pkg-config.
        .systemLibrary(
            name: "CHwloc",
            pkgConfig: "hwloc",
            providers: [.apt(["libhwloc-dev"])]
        ),
        // Thin C shims for what Swift cannot spell: atomics over shared memory,
        // SCM_RIGHTS control messages, memfd seals, cross-memory attach.
        .target(name: "CMyriXen"),
        // The channel layer: emulated Myri-10G board, myrifront/myrback split,
        // endpoints, grants, registration and matching.
        .target(name: "MyriXen", dependencies: ["CMyriXen"]),
        // This host's cores and sockets through hwloc, for the launcher's mapping and binding and
        // for mx_info: apart from the channel layer, so that ranks do not load hwloc.
        .target(name: "Topology", dependencies: ["MyriXen", "CHwloc"]),
        // PMI-1: the wire protocol and the client a rank bootstraps with.
        .target(name: "PMI"),
        // swiftrun's logic: options, hostfiles, mapping, binding, the PMI-1 server, the job.
        .target(name: "Launcher", dependencies: ["PMI", "MyriXen", "CMyriXen", "Topology"]),
        .executableTarget(name: "swiftrun", dependencies: ["Launcher"], linkerSettings: staticRuntime),
        // A rank's start on the channel layer: PMI-1 plus endpoint addresses in the KVS.
        .target(name: "Bootstrap", dependencies: ["MyriXen", "PMI"]),
        // The Swift MPI library.
        .target(name: "MPI", dependencies: ["Bootstrap", "MyriXen", "CMyriXen"]),
        // Example programs, runnable by name through bin/swiftrun.
        .executableTarget(name: "hello", dependencies: ["MPI"], path: "Sources/Examples/hello", linkerSettings: staticRuntime),
        .executableTarget(name: "ring", dependencies: ["MPI"], path: "Sources/Examples/ring", linkerSettings: staticRuntime),
        .executableTarget(name: "pi", dependencies: ["MPI"], path: "Sources/Examples/pi", linkerSettings: staticRuntime),
        .executableTarget(name: "halo", dependencies: ["MPI"], path: "Sources/Examples/halo", linkerSettings: staticRuntime),
        .executableTarget(name: "objects", dependencies: ["MPI"], path: "Sources/Examples/objects", linkerSettings: staticRuntime),
        .executableTarget(name: "stats", dependencies: ["MPI"], path: "Sources/Examples/stats", linkerSettings: staticRuntime),
        .executableTarget(name: "mpi_pingpong", dependencies: ["MPI"], path: "Sources/Benchmarks/mpi_pingpong", linkerSettings: staticRuntime),
        // The OSU collective method without MPI: tests, sizes and counts, the output layout.
        .target(name: "OSUMethod", dependencies: [.product(name: "Histogram", package: "hdrhistogram-swift")],
                path: "Sources/Benchmarks/OSUMethod"),
        .executableTarget(
            name: "mpibench",
            dependencies: ["MPI", "OSUMethod", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Benchmarks/mpibench",
            linkerSettings: staticRuntimeWithFoundation
        ),
        .executableTarget(
            name: "myrback",
            dependencies: ["MyriXen"],
            linkerSettings: staticRuntime
        ),
        .executableTarget(
            name: "mx_info",
            dependencies: ["MyriXen", "Topology", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: staticRuntimeWithFoundation
        ),
        .executableTarget(
            name: "mx_pingpong",
            dependencies: ["MyriXen", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: staticRuntimeWithFoundation
        ),
        // A peer process the multi-process tests start: it opens endpoints and runs scripted roles.
        .executableTarget(
            name: "MyriXenTestPeer",
            dependencies: ["MyriXen", "MyriXenTestSupport"],
            path: "Tests/MyriXenTestPeer"
        ),
        // What the test targets share: private backends, finding the built executables.
        .target(
            name: "MyriXenTestSupport",
            dependencies: ["MyriXen"],
            path: "Tests/MyriXenTestSupport"
        ),
        .testTarget(name: "MyriXenTests", dependencies: ["MyriXen", "MyriXenTestSupport", "Topology"]),
        .testTarget(
            name: "MyriXenProcessTests",
            dependencies: ["MyriXen", "MyriXenTestSupport"],
            exclude: ["Programs"] // a C fault injector the tests build with cc
        ),
        // A Swift rank the launcher tests start: ring, failures, stdin, output.
        .executableTarget(
            name: "LauncherTestRank",
            dependencies: ["Bootstrap", "MyriXen", "PMI"],
            path: "Tests/LauncherTestRank"
        ),
        .executableTarget(name: "MPITestRank", dependencies: ["MPI", "MyriXen"], path: "Tests/MPITestRank"),
        // A rank of the collective tests: every operation and algorithm, checked against a sequential reference.
        .executableTarget(name: "CollectiveTestRank", dependencies: ["MPI", "MyriXen"], path: "Tests/CollectiveTestRank"),
        // Launcher too: FaultTests checks that no job directory of swiftrun outlives its job.
        .testTarget(name: "MPITests", dependencies: ["MPI", "MyriXen", "MyriXenTestSupport", "Launcher", "OSUMethod"],
                    exclude: ["Programs"]), // a C allocation counter the tests build with cc
        .testTarget(name: "OSUMethodTests", dependencies: ["OSUMethod"]),
        .testTarget(
            name: "LauncherTests",
            dependencies: ["Launcher", "PMI", "MyriXen", "MyriXenTestSupport", "Topology"],
            exclude: ["Programs"] // C programs the tests build with mpicc
        ),
    ],
    swiftLanguageModes: [.v6]
)
