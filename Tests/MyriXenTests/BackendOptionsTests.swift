import XCTest
@testable import MyriXen

/// myrback's command line, parsed by hand (BackendOptions): every spelling, every error.
final class BackendOptionsTests: XCTestCase {
    func parse(_ args: [String]) throws(BackendOptions.UsageError) -> BackendOptions { try BackendOptions.parse(args) }

    func problem(_ args: [String]) -> String {
        do { _ = try parse(args); return "" } catch { return error.message }
    }

    func testEveryOptionInBothSpellingsAndTheCommandLineThatSaysIt() throws {
        var o = BackendOptions()
        o.socket = "/tmp/x/b.sock"; o.hostname = "vm1"; o.boards = 3; o.endpoints = 40; o.ringKb = 256
        o.wire = "10.0.0.1"; o.hostTimeout = 9; o.wireMtu = 1500; o.maxConnections = 7; o.idleExit = 4
        o.removeEmptyDirectory = true; o.launcherPid = 4242; o.listenFd = 3; o.foreground = true; o.verbose = true
        let args = o.commandLine
        XCTAssertEqual(args.count, 2 * 12 + 3, "\(args)")
        let back = try parse(args)
        XCTAssertEqual(back.commandLine, args, "parse(commandLine) says the same")
        XCTAssertEqual(back.socket, "/tmp/x/b.sock")
        XCTAssertEqual(back.boards, 3)
        XCTAssertEqual(back.launcherPid, 4242)
        XCTAssertEqual(back.listenFd, 3)
        XCTAssertTrue(back.removeEmptyDirectory && back.foreground && back.verbose && !back.daemonize)
        // --name=value, and the short flags.
        let eq = try parse(["--boards=5", "--socket=/a=b", "-v", "--daemonize"])
        XCTAssertEqual(eq.boards, 5)
        XCTAssertEqual(eq.socket, "/a=b", "only the first '=' splits")
        XCTAssertTrue(eq.verbose && eq.daemonize)
        XCTAssertTrue(try parse(["-h"]).help)
        XCTAssertEqual(BackendOptions().commandLine, [], "the defaults say nothing")
    }

    func testBadCommandLinesNameTheProblemAndTheFix() throws {
        XCTAssertTrue(problem(["--bogus"]).hasPrefix("unknown option '--bogus'; the options are --socket, --hostname,"), problem(["--bogus"]))
        XCTAssertEqual(problem(["--boards"]), "--boards needs a value: --boards <n>")
        XCTAssertEqual(problem(["--boards", "two"]), "--boards takes a whole number, not 'two'")
        XCTAssertEqual(problem(["--boards", "99999999999"]), "--boards 99999999999 is out of range (0 to 2147483647)")
        XCTAssertEqual(problem(["--launcher-pid", "-1"]), "--launcher-pid -1 is out of range (0 to 2147483647)")
        XCTAssertEqual(problem(["--foreground=yes"]), "--foreground is a flag and takes no value")
        XCTAssertEqual(problem(["serve"]), "unexpected argument 'serve': myrback takes options only (see myrback --help)")
        XCTAssertEqual(problem(["--socket", "/x", "--idle-exit", "a\u{1}b"]), "--idle-exit takes a whole number, not 'a?b'", "control characters are not echoed")
        func invalid(_ args: [String]) throws -> String {
            do { try parse(args).validate(); return "" } catch { return error.message }
        }
        XCTAssertEqual(try invalid(["--foreground", "--daemonize"]), "--foreground and --daemonize exclude each other")
        XCTAssertEqual(try invalid(["--idle-exit", "0"]), "--idle-exit must be at least 1 second, not 0")
        XCTAssertEqual(try invalid(["--listen-fd", "3"]), "--listen-fd needs --socket, the path the descriptor is bound to")
        XCTAssertEqual(try invalid(["--socket", "/x", "--listen-fd", "3", "--daemonize"]), "--listen-fd takes a descriptor number >= 0, and excludes --daemonize")
        XCTAssertEqual(try invalid(["--wire-mtu", "100"]), "--wire-mtu (or \(MXWire.mtuEnvironment)) must be 576 to 65535 bytes, not 100")
        XCTAssertEqual(try invalid(["--host-timeout", "0"]), "--host-timeout (or \(MXWire.hostTimeoutEnvironment)) must be 1 to 86400 seconds, not 0")
    }

    func testTheHelpListsEveryOptionWithinEightyColumns() {
        let help = BackendOptions.helpText
        for spec in BackendOptions.specs { XCTAssertTrue(help.contains("  --\(spec.name)"), spec.name) }
        for line in help.split(separator: "\n") { XCTAssertLessThanOrEqual(line.count, 80, String(line)) }
    }
}
