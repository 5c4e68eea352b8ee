import XCTest
@testable import Launcher
import MyriXen
import Topology
#if canImport(Glibc)
import Glibc
#endif

final class OptionTests: XCTestCase {
    func testBothSpellingsAndMPMD() throws {
        let o = try LaunchOptions.parse(["-np", "2", "--map-by", "node", "-genv", "A", "1", "-x", "B=2", "-x", "C",
                                         "-l", "--bind-to=core", "prog", "-n", "5", "--flag", ":", "-n", "3", "--wdir", "/tmp", "other", "x"])
        XCTAssertEqual(o.apps.count, 2)
        XCTAssertEqual(o.apps[0], AppSpec(program: "prog", arguments: ["-n", "5", "--flag"], count: 2))
        XCTAssertEqual(o.apps[1].program, "other")
        XCTAssertEqual(o.apps[1].count, 3)
        XCTAssertEqual(o.apps[1].workingDirectory, "/tmp")
        XCTAssertEqual(o.mapBy, .node)
        XCTAssertEqual(o.bindTo, .core)
        XCTAssertTrue(o.tagOutput)
        XCTAssertEqual(o.environment.map(\.name), ["A", "B", "C"])
        XCTAssertEqual(o.environment.map(\.value), ["1", "2", nil])
    }

    func testBadInputIsAUsageErrorNamingTheProblem() {
        for (argv, words) in [(["--bogus", "p"], "unknown option --bogus"), (["-n", "0", "p"], "-n must be a positive number, not '0'"),
                              (["-n"], "-n needs a value"), ([], "no program to run"), (["p", ":"], "nothing after ':'"),
                              (["--map-by", "diagonal", "p"], "--map-by diagonal"), (["-f", "a", "--host", "b", "p"], "not both"),
                              (["--timeout", "-3", "p"], "--timeout must be a positive number")] {
            XCTAssertThrowsError(try LaunchOptions.parse(argv), "\(argv)") {
                let e = $0 as! LaunchError
                XCTAssertEqual(e.exitCode, 2)
                XCTAssertTrue(e.message.contains(words), "\(e.message) should say \(words)")
            }
        }
        XCTAssertEqual(try LaunchOptions.parse(["p"], environment: ["MPIEXEC_TIMEOUT": "7"]).timeoutSeconds, 7)
        XCTAssertThrowsError(try LaunchOptions.parse(["p"], environment: ["MPIEXEC_TIMEOUT": "soon"]))
    }

    func testEnvironmentNamesMustBeVariableNames() throws {
        // Issue 8.9: `-x =foo` exported `foo=`, `-x -n 1` took -n for a variable.
        for (argv, words) in [(["-x", "=foo", "p"], "-x =foo: '' is not a variable name (letters, digits and '_', not starting with a digit); give NAME or NAME=VALUE"),
                              (["-x", "-n", "1", "p"], "-x needs NAME or NAME=VALUE, not the option '-n'"),
                              (["-x", "1A=2", "p"], "'1A' is not a variable name"),
                              (["-x", "A-B=1", "p"], "'A-B' is not a variable name"),
                              (["-x", "A\u{1B}B", "p"], "is not a variable name"),
                              (["-x", "", "p"], "'' is not a variable name"),
                              (["-genv", "-n", "1", "p"], "-genv needs NAME VALUE, not the option '-n'"),
                              (["-genv", "=x", "1", "p"], "-genv =x: '' is not a variable name"),
                              (["-genv", "A=1", "B", "p"], "-genv A=1: NAME and VALUE are two words"),
                              (["-env", "A B", "1", "p"], "-env A B: 'A B' is not a variable name"),
                              (["p", ":", "-env", "é", "1", "q"], "'é' is not a variable name")] {
            XCTAssertThrowsError(try LaunchOptions.parse(argv), "\(argv)") {
                let e = $0 as! LaunchError
                XCTAssertEqual(e.exitCode, 2)
                XCTAssertTrue(e.message.contains(words), "\(e.message) should say \(words)")
            }
        }
        let o = try LaunchOptions.parse(["-x", "_A1=x=y", "-x", "E=", "-x", "KEEP", "-genv", "G_2", "-n", "-env", "L", "", "p"])
        XCTAssertEqual(o.environment.map(\.name), ["_A1", "E", "KEEP", "G_2"])
        XCTAssertEqual(o.environment.map(\.value), ["x=y", "", nil, "-n"], "a value may be anything, an empty one is empty (not the caller's)")
        XCTAssertEqual(o.apps[0].environment.map(\.name), ["L"])
    }

    func testHugeCountsAreBoundedWithTheLimitAndTheFix() throws {
        // Issue 8.6: -n 99999999999 made swiftrun allocate 800 GB; MPIEXEC_TIMEOUT overflowed.
        for (argv, env, words) in [(["-n", "99999999999", "p"], [:], "-n 99999999999 is more than the 65536 ranks a job can have; lower it"),
                                   (["-np=9223372036854775808", "p"], [:], "-np 9223372036854775808 is more than the 65536 ranks"),
                                   (["-n", "65537", "p"], [:], "-n 65537 is more than the 65536 ranks"),
                                   (["-n", "-9223372036854775809", "p"], [:], "-n must be a positive number, not '-9223372036854775809'"),
                                   (["-ppn", "8193", "p"], [:], "-ppn 8193 is more than the 8192 ranks a host can hold (an endpoint each: 32 boards of 256); lower it"),
                                   (["-ppn", "18446744073709551616", "p"], [:], "-ppn 18446744073709551616 is more than the 8192 ranks"),
                                   (["--timeout", "99999999999999999999", "p"], [:], "--timeout 99999999999999999999 is more than a year (31536000 s)"),
                                   (["--timeout=31536001", "p"], [:], "--timeout 31536001 is more than a year"),
                                   (["--timeout", "NaN", "p"], [:], "--timeout must be a positive number, not 'NaN'"),
                                   (["--timeout", "1e9", "p"], [:], "--timeout must be a positive number, not '1e9'"),
                                   (["p"], ["MPIEXEC_TIMEOUT": "99999999999999999"], "MPIEXEC_TIMEOUT=99999999999999999 is more than a year"),
                                   (["p"], ["MPIEXEC_TIMEOUT": "-1"], "MPIEXEC_TIMEOUT=-1 is not a positive number")] {
            XCTAssertThrowsError(try LaunchOptions.parse(argv, environment: env), "\(argv) \(env)") {
                let e = $0 as! LaunchError
                XCTAssertEqual(e.exitCode, 2)
                XCTAssertTrue(e.message.contains(words), "\(e.message) should say \(words)")
            }
        }
        XCTAssertEqual(try LaunchOptions.parse(["-n", "65536", "-ppn", "8192", "--timeout", "31536000", "p"]).apps[0].count, 65536, "the limits themselves are allowed")
    }
}

final class HostfileTests: XCTestCase {
    func testBothForms() throws {
        let hosts = try Hostfile.parse("""
        # cluster
        node1:4
        node2            # one slot
        alice@node3 slots=2 max_slots=3

        node1:2
        """, file: "hf")
        XCTAssertEqual(hosts, [HostEntry(name: "node1", slots: 6), HostEntry(name: "node2", slots: 1),
                               HostEntry(name: "node3", user: "alice", slots: 2, maxSlots: 3)])
        XCTAssertEqual(try Hostfile.parseHostList("a:2,b,a"), [HostEntry(name: "a", slots: 3), HostEntry(name: "b", slots: 1)])
    }

    func testErrorsNameFileLineAndFix() {
        for (text, words) in [("good\nbad:x\n", "hf:2: 'bad:x': the count after ':' must be a positive number"),
                              ("h slots=0\n", "hf:1: slots must be a positive number, not '0'"),
                              ("h color=red\n", "hf:1: unknown field 'color'"),
                              ("h slots=4 max_slots=2\n", "hf:1: max_slots=2 is less than slots=4"),
                              ("# nothing\n\n", "hf: no hosts"),
                              ("h$st\n", "hf:1: 'h$st' is not a valid host name")] {
            XCTAssertThrowsError(try Hostfile.parse(text, file: "hf")) {
                XCTAssertTrue(($0 as! LaunchError).message.contains(words), "\($0) should say \(words)")
            }
        }
        // Issue 8.6: slots=9223372036854775807 segfaulted in the mapping; sums overflowed.
        let manyHosts = (0...65536).map { "h\($0)" }.joined(separator: "\n")
        for (text, words) in [("h slots=9223372036854775807\n", "hf:1: slots=9223372036854775807 is more than the 8192 ranks a host can hold"),
                              ("h slots=99999999999999999999999\n", "hf:1: slots=99999999999999999999999 is more than the 8192"),
                              ("h max_slots=8193\n", "hf:1: max_slots=8193 is more than the 8192"),
                              ("h:4294967297\n", "hf:1: 'h:4294967297': 4294967297 slots is more than the 8192 ranks a host can hold"),
                              ("h:-9223372036854775808\n", "the count after ':' must be a positive number"),
                              ("h slots=8192\nh:1\n", "hf:2: h is named again: its slots add up to 8193, more than the 8192"),
                              ("h slots=1 max_slots=8192\nh\n", "hf:2: h is named again: its max_slots add up to 8193"),
                              (manyHosts, "hf:65537: more than 65536 hosts, and the 65536 ranks a job can have; list fewer")] {
            XCTAssertThrowsError(try Hostfile.parse(text, file: "hf")) {
                XCTAssertTrue(($0 as! LaunchError).message.contains(words), "\($0) should say \(words)")
            }
        }
        XCTAssertThrowsError(try Hostfile.parseHostList("localhost:4294967297")) {
            XCTAssertTrue(($0 as! LaunchError).message.contains("4294967297 slots is more than the 8192 ranks a host can hold"), "\($0)")
        }
        XCTAssertThrowsError(try Hostfile.parseHostList("a:8000,a:193")) {
            XCTAssertTrue(($0 as! LaunchError).message.contains("a is named again: its slots add up to 8193"), "\($0)")
        }
        XCTAssertEqual(try Hostfile.parse("h slots=8000\nh:192\n", file: "hf"), [HostEntry(name: "h", slots: 8192)])
        XCTAssertEqual(try Hostfile.parse("h slots=2 max_slots=3\nh slots=4\n", file: "hf"), [HostEntry(name: "h", slots: 6, maxSlots: 7)],
                       "a line without max_slots adds its slots to the host's max_slots")
        XCTAssertEqual(try Hostfile.parse(manyHosts.split(separator: "\n").dropLast().joined(separator: "\n"), file: "hf").count, 65536)
        XCTAssertThrowsError(try Hostfile.load("/nonexistent/hostfile")) {
            XCTAssertTrue(($0 as! LaunchError).message.contains("cannot read hostfile /nonexistent/hostfile"))
        }
    }

    func testNulsRepeatedCountsAndDirectoriesAreErrorsAndBytesAreShownEscaped() throws {
        // Issue 8.9: a NUL in a host name was accepted (fgets cut the line there and glued the
        // rest to the next), `slots=2 slots=3` meant 3, a directory said "no hosts", and a
        // hostfile's bytes went raw to the terminal.
        func error(_ bytes: [UInt8]) -> String {
            do { _ = try Hostfile.parse(bytes, file: "hf"); return "no error" } catch { return error.description }
        }
        for (bytes, words) in [(Array("good\nho".utf8) + [0] + Array("st\n".utf8), "hf:2: a NUL byte (\\x00) at column 3: a hostfile is text"),
                               (Array("ba".utf8) + [0x1B] + Array("[31md".utf8) + [0xFF, 0x0A], "hf:1: 'ba\\x1b[31md\\xff' is not a valid host name"),
                               (Array("h".utf8) + [0xC2, 0x9B] + Array("2J".utf8), "'h\\u{9b}2J' is not a valid host name"),
                               (Array("h".utf8) + [0xE2, 0x80, 0xAE] + Array("x".utf8), "'h\\u{202e}x' is not a valid host name"),
                               (Array("h color=".utf8) + [0x07, 0x0D, 0x7F], "hf:1: unknown field 'color'"),
                               (Array("h slots=".utf8) + [0x1B, 0x5B, 0x32, 0x4A], "hf:1: slots must be a positive number, not '\\x1b[2J'"),
                               (Array("-oProxyCommand=x\n".utf8), "'-oProxyCommand=x' is not a valid host name"),
                               (Array("-v\n".utf8), "'-v' is not a valid host name (letters, digits, '-', '.', '_', not starting with '-')"),
                               (Array("-x@h\n".utf8), "'-x' is not a valid user name"),
                               (Array("h slots=2 slots=3\n".utf8), "hf:1: 'slots=3': slots is already given ('slots=2'); give it once"),
                               (Array("h:2 slots=3\n".utf8), "hf:1: 'slots=3': slots is already given (':2')"),
                               (Array("h cpu=1 slots=1\n".utf8), "'slots=1': slots is already given ('cpu=1')"),
                               (Array("h max_slots=4 max-slots=5\n".utf8), "'max-slots=5': max_slots is already given ('max_slots=4')"),
                               (Array("h =3\n".utf8), "'=3' is not slots=N")] {
            let e = error(bytes)
            XCTAssertTrue(e.contains(words), "\(e) should say \(words)")
            XCTAssertFalse(e.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value < 0xA0) || $0 == "\u{202E}" },
                           "nothing of the file reaches the terminal raw: \(e.debugDescription)")
        }
        XCTAssertEqual(try Hostfile.parse("h slots=2 max_slots=3\n", file: "hf"), [HostEntry(name: "h", slots: 2, maxSlots: 3)], "each field once is fine")
        // From disk: a directory, a NUL mid-file (fgets used to cut and join lines there).
        XCTAssertThrowsError(try Hostfile.load("/tmp")) {
            XCTAssertEqual(($0 as! LaunchError).message, "hostfile /tmp is a directory, not a file; give the file that lists the hosts (e.g. hostfiles/localhost)")
        }
        let path = "/tmp/srtest-nulhosts-\(getpid())"
        defer { unlink(path) }
        let f = fopen(path, "w")!
        fwrite([UInt8]("a\nb".utf8) + [0] + Array("c\nd\n".utf8), 1, 8, f)
        fclose(f)
        XCTAssertThrowsError(try Hostfile.load(path)) {
            XCTAssertTrue(($0 as! LaunchError).message.hasSuffix(":2: a NUL byte (\\x00) at column 2: a hostfile is text, one host a line"), "\($0)")
        }
        let big = fopen(path, "w")!
        let comment = [UInt8](repeating: UInt8(ascii: "#"), count: 1 << 20)
        for _ in 0..<17 { fwrite(comment, 1, comment.count, big) }
        fclose(big)
        XCTAssertThrowsError(try Hostfile.load(path)) {
            XCTAssertTrue(($0 as! LaunchError).message.hasSuffix(" is larger than 16 MiB; is it a hostfile?"), "\($0)")
        }
        XCTAssertThrowsError(try Hostfile.load("/dev/zero"), "an endless stream of NULs ends at once") {
            XCTAssertTrue(($0 as! LaunchError).message.contains("/dev/zero:1: a NUL byte"), "\($0)")
        }
        XCTAssertThrowsError(try Hostfile.parseHostList("a,b\u{1B}]0;x\u{07}")) {
            XCTAssertEqual(($0 as! LaunchError).description, "swiftrun: --host a,b\\x1b]0;x\\x07: 'b\\x1b]0;x\\x07' is not a valid host name (letters, digits, '-', '.', '_', not starting with '-')")
        }
    }

    func testVisibleEscapesWhatATerminalWouldObey() {
        XCTAssertEqual(Visible.text("plain text: a-b_c.d/e \\ ok"), "plain text: a-b_c.d/e \\ ok")
        XCTAssertEqual(Visible.text("\u{1B}[2J\u{07}\u{00}\u{7F}\t\r\n"), "\\x1b[2J\\x07\\x00\\x7f\\t\\r\\n")
        XCTAssertEqual(Visible.text("caf\u{E9} \u{9B}31m \u{202E}txt.exe \u{2066}"), "caf\u{E9} \\u{9b}31m \\u{202e}txt.exe \\u{2066}", "printable Unicode stays, C1 and bidi controls do not")
        XCTAssertEqual(Visible.bytes([0x61, 0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x62, 0xF0, 0x9F, 0x98, 0x80]), "a\\xff\\xc3(\\xe2\\x82b\u{1F600}", "bytes that are not UTF-8, one by one")
        XCTAssertEqual(Visible.bytes([0xED, 0xA0, 0x80]), "\\xed\\xa0\\x80", "a UTF-16 surrogate is not UTF-8")
        XCTAssertEqual(Visible.text(Visible.text("a\u{1B}b")), "a\\x1bb", "escaping twice changes nothing")
        XCTAssertEqual(LaunchError("rank said \u{1B}]0;pwned\u{07}").description, "swiftrun: rank said \\x1b]0;pwned\\x07")
    }

    func testTheShippedHostfilesParse() throws {
        let dir = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        XCTAssertEqual(try Hostfile.load("/" + dir + "/hostfiles/localhost").map(\.name), ["localhost"])
        XCTAssertEqual(try Hostfile.load("/" + dir + "/hostfiles/emulated-cluster"),
                       [HostEntry(name: "vm1", slots: 2), HostEntry(name: "vm2", slots: 2)])
        XCTAssertEqual(try Hostfile.load("/" + dir + "/hostfiles/vms.example").map(\.user), [nil, nil, "mpiuser"])
    }
}

final class MappingTests: XCTestCase {
    let app = AppSpec(program: "p", arguments: [], count: nil)
    func apps(_ counts: Int...) -> [AppSpec] { counts.map { AppSpec(program: "p", arguments: [], count: $0) } }
    let two = [HostEntry(name: "a", slots: 2), HostEntry(name: "b", slots: 2)]

    func hostsOf(_ p: [RankPlacement]) -> [Int] { p.map(\.host) }

    func testBlocksRoundRobinAndPPN() throws {
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(4), hosts: two, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)), [0, 0, 1, 1])
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(4), hosts: two, perNode: nil, mapBy: .node, oversubscribe: false, source: "hf", defaultCount: 1)), [0, 1, 0, 1])
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(2), hosts: two, perNode: 1, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)), [0, 1])
        let one = [HostEntry(name: "a", slots: 1), HostEntry(name: "b", slots: 1), HostEntry(name: "c", slots: 1)]
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(3), hosts: one, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)), [0, 1, 2], "MPICH: hosts without counts take ranks round robin")
    }

    func testOversubscription() throws {
        XCTAssertThrowsError(try Mapper.map(apps: apps(5), hosts: two, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)) {
            XCTAssertTrue(($0 as! LaunchError).message.contains("5 ranks but hf offers 4 slots"))
        }
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(6), hosts: two, perNode: nil, mapBy: .slot, oversubscribe: true, source: "hf", defaultCount: 1)), [0, 0, 0, 1, 1, 1], "oversubscribed shares stay balanced")
        XCTAssertEqual(hostsOf(try Mapper.map(apps: apps(5), hosts: two, perNode: nil, mapBy: .node, oversubscribe: true, source: "hf", defaultCount: 1)), [0, 1, 0, 1, 0])
        XCTAssertThrowsError(try Mapper.map(apps: apps(6), hosts: two, perNode: 3, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1))
        // The local host without a hostfile takes any number of ranks.
        let local = [HostEntry(name: "here", slots: nil)]
        XCTAssertEqual(try Mapper.map(apps: apps(16), hosts: local, perNode: nil, mapBy: .slot, oversubscribe: false, source: "this host", defaultCount: 2).count, 16)
        XCTAssertEqual(try Mapper.map(apps: [app], hosts: local, perNode: nil, mapBy: .slot, oversubscribe: false, source: "this host", defaultCount: 2).count, 2, "no -n: the cores")
        XCTAssertEqual(try Mapper.map(apps: [app], hosts: two, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 9).count, 4, "no -n: the slots")
    }

    func testRanksPerJobAndPerHostAreBounded() throws {
        // Issue 8.6: counts beyond the limits are errors naming the value, the limit and the fix.
        let huge = [HostEntry(name: "big", slots: Int.max)], wide = (0..<9).map { HostEntry(name: "h\($0)", slots: 8000) }
        let local = [HostEntry(name: "here", slots: nil)], one = [HostEntry(name: "a", slots: 1)]
        for (apps, hosts, perNode, over, words) in [
            (apps(4), huge, nil as Int?, false, "big in hf: slots=9223372036854775807 is more than the 8192 ranks a host can hold"),
            (apps(Int.max), two, nil, true, "-n 9223372036854775807 is more than the 65536 ranks a job can have; lower -n"),
            (apps(40000, 40000), local, nil, false, "80000 ranks is more than the 65536 ranks a job can have; lower -n"),
            (apps(Int.max, Int.max), local, nil, false, "is more than the 65536 ranks a job can have"),
            ([app], wide, nil, false, "the slots of hf add up to 72000 ranks, more than the 65536 ranks a job can have; give -n"),
            (apps(8193), local, nil, false, "8193 ranks on here is more than the 8192 ranks a host can hold"),
            (apps(8193), one, nil, true, "8193 ranks on a is more than the 8192 ranks a host can hold"),
            (apps(2), two, Int.max, true, "-ppn 9223372036854775807 is more than the 8192 ranks a host can hold"),
            (apps(2), two, 0, true, "-ppn 0 must be at least 1"), (apps(-5), two, nil, true, "-n -5 must be at least 1"),
            (apps(2), [HostEntry(name: "z", slots: 0)], nil, true, "z in hf: slots=0 must be at least 1")] {
            for mapBy in [MapBy.slot, .node] {
                XCTAssertThrowsError(try Mapper.map(apps: apps, hosts: hosts, perNode: perNode, mapBy: mapBy, oversubscribe: over, source: "hf", defaultCount: 1)) {
                    XCTAssertTrue(($0 as! LaunchError).message.contains(words), "\($0) should say \(words)")
                }
            }
        }
        XCTAssertEqual(try Mapper.map(apps: apps(8192), hosts: local, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1).count, 8192)
        // The largest job over the most hosts maps in linear time (round robin used to look at
        // every host for every rank).
        let many = (0..<65536).map { HostEntry(name: "h\($0)", slots: 1) }
        let start = monotonicNanoseconds()
        let rr = try Mapper.map(apps: apps(65536), hosts: many, perNode: nil, mapBy: .node, oversubscribe: false, source: "hf", defaultCount: 1)
        XCTAssertEqual(rr.map(\.host), Array(0..<65536))
        XCTAssertLessThan(Double(monotonicNanoseconds() - start) / 1e9, 10, "65,536 hosts and ranks take seconds at most")
        // The boards a backend gets hold every rank of its host, up to the limit.
        XCTAssertTrue(LocalJob.boards(for: 1) == (1, 32) && LocalJob.boards(for: 1024) == (32, 32) && LocalJob.boards(for: 1025) == (32, 33)
                      && LocalJob.boards(for: MXLimits.maxRanksPerHost) == (32, 256))
    }

    func testMPMDLocalRanksAndProcessMapping() throws {
        let p = try Mapper.map(apps: apps(3, 1), hosts: two, perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)
        XCTAssertEqual(p.map(\.app), [0, 0, 0, 1])
        XCTAssertEqual(p.map(\.localRank), [0, 1, 0, 1])
        XCTAssertEqual(p.map(\.localSize), [2, 2, 2, 2])
        XCTAssertEqual(Mapper.processMapping(p), "(vector,(0,2,2))")
        let uneven = try Mapper.map(apps: apps(3), hosts: [HostEntry(name: "a", slots: 2), HostEntry(name: "b", slots: 1)], perNode: nil, mapBy: .slot, oversubscribe: false, source: "hf", defaultCount: 1)
        XCTAssertEqual(Mapper.processMapping(uneven), "(vector,(0,1,2),(1,1,1))")
        let rr = try Mapper.map(apps: apps(4), hosts: two, perNode: nil, mapBy: .node, oversubscribe: false, source: "hf", defaultCount: 1)
        XCTAssertEqual(Mapper.processMapping(rr), "(vector,(0,2,1))", "round robin: one tuple, repeated by MPICH")
        let odd = [0, 0, 1, 0].enumerated().map { RankPlacement(rank: $0.offset, host: $0.element, app: 0, localRank: 0, localSize: 0) }
        XCTAssertEqual(Mapper.processMapping(odd), "(vector,(0,1,2),(1,1,1),(0,1,1))", "any layout, tuple by tuple")
    }

    func testBindingFromATopology() {
        let core = { (i: Int, pkg: Int) in HostTopology.Core(index: i, package: pkg, numaNode: pkg, processingUnits: [2 * i, 2 * i + 1]) }
        let t = HostTopology(packages: 2, numaNodes: 2, cores: [core(0, 0), core(1, 0), core(2, 1), core(3, 1)], processingUnits: 8)
        XCTAssertEqual(Binder.plan(localRanks: 2, mapBy: .core, bindTo: nil, topology: t).map(\.description), ["core 0 (PU 0,1)", "core 1 (PU 2,3)"])
        XCTAssertEqual(Binder.plan(localRanks: 2, mapBy: .socket, bindTo: .core, topology: t).map(\.processingUnits), [[0, 1], [4, 5]], "spread over sockets")
        XCTAssertEqual(Binder.plan(localRanks: 2, mapBy: .core, bindTo: .socket, topology: t)[1].description, "socket 0 (PU 0,1,2,3)")
        XCTAssertEqual(Binder.plan(localRanks: 3, mapBy: .core, bindTo: .hwthread, topology: t).map(\.processingUnits), [[0], [1], [2]])
        XCTAssertEqual(Binder.plan(localRanks: 5, mapBy: .core, bindTo: nil, topology: t), Array(repeating: .unbound, count: 5), "more ranks than cores: not bound by default")
        XCTAssertEqual(Binder.plan(localRanks: 5, mapBy: .core, bindTo: .core, topology: t)[0].description, "not bound (oversubscribed)")
        XCTAssertFalse(Binder.plan(localRanks: 2, mapBy: .core, bindTo: BindTo.none, topology: t)[0].isBound)
    }
}
