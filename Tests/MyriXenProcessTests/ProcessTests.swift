import XCTest
import MyriXen
import MyriXenTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Multi-process tests: this process holds one endpoint, peer processes (MyriXenTestPeer)
/// hold others, on a private backend (`peerBackend`: another host's). Every peer checks what
/// it receives and reports by exit code; this side checks what it receives.
class PeerProcessTestCase: XCTestCase {
    var backend: TestBackend!
    /// Where the peers open their endpoints; nil: this test's own backend.
    var peerBackend: TestBackend?
    var mx: MXContext!
    var ep: MXEndpoint!
    var peers: [ChildProcess] = []
    let key: UInt32 = 0x51DE

    override func tearDown() {
        for p in peers where p.poll() == nil {
            p.signal(SIGKILL)
            _ = p.wait()
        }
        ep?.close()
        mx?.finalize()
        backend?.stop()
        peerBackend?.stop()
    }

    func spawnPeer(_ role: String, _ extra: [String] = []) throws -> ChildProcess {
        let p = try ChildProcess.spawn(BuiltProducts.path("MyriXenTestPeer"),
                                       [role, "--socket", (peerBackend ?? backend).socketPath, "--nic", String(ep.nicID, radix: 16),
                                        "--ep", String(ep.endpointID), "--key", String(key),
                                        "--parent-pid", String(getpid())] + extra)
        peers.append(p)
        return p
    }

    let word = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    deinit { word.deallocate() }

    /// Receives a peer's hello; returns its address and pid.
    func hello(id: Int = 0) throws -> (MXEndpointAddress, Int32) {
        let st = try ep.wait(try ep.irecv(word, matchInfo: PeerTag.hello | UInt64(id)), timeout: .seconds(30))
        return (st.source!, Int32(word.load(as: UInt64.self)))
    }

    func status() throws -> UInt64 {
        _ = try ep.wait(try ep.irecv(word, matchInfo: PeerTag.status), timeout: .seconds(30))
        return word.load(as: UInt64.self)
    }

    func done(_ peer: MXEndpointAddress) throws {
        word.storeBytes(of: 0, as: UInt64.self)
        _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(word), to: peer, matchInfo: PeerTag.done), timeout: .seconds(30))
    }

    func assertExit(_ p: ChildProcess, _ code: Int32 = 0, within seconds: Double = 60, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(p.wait(seconds: seconds), .exited(code), "peer \(p.pid)", file: file, line: line)
    }

    /// Sends to `peer` until a send fails, for up to a second: the error, if one came.
    func firstSendError(to peer: MXEndpointAddress) -> MXError? {
        let start = monotonicNanoseconds()
        while monotonicNanoseconds() - start < 1_000_000_000 {
            do {
                try ep.progress()
                let s = try ep.isend(UnsafeRawBufferPointer(word), to: peer, matchInfo: 1)
                _ = try ep.wait(s, timeout: .milliseconds(10))
            } catch {
                return error as? MXError
            }
            usleep(1000)
        }
        return nil
    }

    /// A peer process echoes a message of each size; every echo is checked byte for byte.
    /// `peerOptions` go to the peer (e.g. `--threshold`, `--local-path`); with `short`, the
    /// peer receives into a buffer that many bytes shorter and echoes what it took; with
    /// `segmented`, the echo is received into segments of odd lengths.
    func checkEcho(sizes: [Int], peerOptions: [String] = [], short: Int = 0, segmented: Bool = false,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try spawnPeer("echo", ["--sizes", sizes.map(String.init).joined(separator: ","), "--short", String(short)] + peerOptions)
        let (peer, _) = try hello()
        // A guard band after the echo's bytes, which nothing may write.
        let band = 256
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(sizes.max() ?? 1, 1), alignment: 4096)
        let back = UnsafeMutableRawBufferPointer.allocate(byteCount: (sizes.max() ?? 0) + band, alignment: 4096)
        defer { out.deallocate(); back.deallocate() }
        for size in sizes {
            let kept = max(size - short, 0)
            let view = UnsafeMutableRawBufferPointer(rebasing: out[0..<size])
            Pattern.fill(view, seed: size)
            UnsafeMutableRawBufferPointer(rebasing: back[kept..<(kept + band)]).initializeMemory(as: UInt8.self, repeating: 0xEE)
            let s = try ep.isend(UnsafeRawBufferPointer(view), to: peer, matchInfo: UInt64(size))
            let echo = PeerTag.echo | UInt64(size)
            let st: MXStatus
            if segmented {
                // Segments of 1, 4095, 8191 and 16321 bytes, then the rest: pieces of the
                // message straddle segment ends.
                var segs: [MXSegment] = []
                var at = 0
                for len in [1, 4095, 8191, 16321] where at < kept {
                    let n = min(len, kept - at)
                    segs.append(MXSegment(back.baseAddress! + at, length: n))
                    at += n
                }
                if at < kept || segs.isEmpty { segs.append(MXSegment(back.baseAddress! + at, length: kept - at)) }
                st = try segs.withUnsafeBufferPointer { try ep.wait(try ep.irecv(segments: $0, matchInfo: echo), timeout: .seconds(30)) }
            } else {
                st = try ep.wait(try ep.irecv(UnsafeMutableRawBufferPointer(rebasing: back[0..<kept]), matchInfo: echo), timeout: .seconds(30))
            }
            let sent = try ep.wait(s, timeout: .seconds(30))
            XCTAssertEqual(st.messageLength, kept, "echo of \(size) bytes", file: file, line: line)
            XCTAssertEqual(st.source, peer, file: file, line: line)
            if size > ep.rendezvousThreshold {
                XCTAssertEqual(sent.transferredLength, kept, "the sender of \(size) bytes learns what was taken", file: file, line: line)
            }
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: back[0..<kept]), seed: size), "echo of \(size) bytes",
                         file: file, line: line)
            XCTAssertTrue(back[kept..<(kept + band)].allSatisfy { $0 == 0xEE }, "nothing written past the \(kept) bytes of the echo of \(size)",
                          file: file, line: line)
        }
        try done(peer)
        assertExit(p)
    }

    /// `n` peer processes each send `count` messages; any-source receives see each sender's
    /// messages in its order, from its address, intact.
    func checkSenders(_ n: Int, count: Int, sizes: [Int]) throws {
        var procs: [ChildProcess] = []
        for id in 0..<n {
            procs.append(try spawnPeer("sender", ["--id", String(id), "--count", String(count), "--sizes", sizes.map(String.init).joined(separator: ",")]))
        }
        var addresses: [MXEndpointAddress] = []
        for id in 0..<n { addresses.append(try hello(id: id).0) }
        var next = [Int](repeating: 0, count: n)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: sizes.max() ?? 8, alignment: 64)
        defer { buf.deallocate() }
        for _ in 0..<(n * count) {
            // Any sender, any sequence: only the tag space of the senders.
            let st = try ep.wait(try ep.irecv(buf, matchInfo: 0, mask: 0xFFFF_0000_0000_0000), timeout: .seconds(60))
            let id = Int(st.matchInfo >> 32)
            let seq = Int(st.matchInfo & 0xFFFF_FFFF)
            XCTAssertEqual(seq, next[id], "sender \(id)'s messages arrive in its send order")
            XCTAssertEqual(st.source, addresses[id])
            XCTAssertEqual(st.messageLength, sizes[seq % sizes.count])
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: buf[0..<st.messageLength]), seed: id * 100_000 + seq))
            next[id] = seq + 1
        }
        XCTAssertEqual(next, [Int](repeating: count, count: n))
        for a in addresses { try done(a) }
        for p in procs { assertExit(p) }
    }
}

final class ProcessTests: PeerProcessTestCase {
    override func setUpWithError() throws {
        backend = try TestBackend(boards: 1, endpoints: 32)
        mx = try backend.context()
        ep = try mx.openEndpoint(key: key)
    }

    // MARK: data

    func testEverySizeClassRoundTripsBetweenProcesses() throws {
        try checkEcho(sizes: [0, 1, 8, 32, 33, 128, 129, 1000, 4096, 4097, 32768, 65536, 1 << 20, 4 << 20])
        XCTAssertGreaterThan(ep.counter(.rendezvousPulls), 0, "large echoes were pulled across processes")
    }

    /// Every path a message of one host can take (eager; rendezvous moved by copy through the
    /// ring; rendezvous pulled by cross-memory attach), at sizes one below, at and one above
    /// each threshold and piece boundary, with the thresholds configured both ways, whole,
    /// truncated and into segments, byte for byte.
    func testEveryPathAroundEveryThresholdByteForByte() throws {
        let piece = 16320  // a 64 KiB ring's largest piece
        func around(_ xs: [Int]) -> [Int] { xs.flatMap { [$0 - 1, $0, $0 + 1] } }
        let configurations: [(threshold: Int, path: MXLocalPath)] = [
            (MXLimits.rendezvousThresholdLocal, .pieces(upTo: Int.max)),  // every rendezvous in pieces
            (2048, .pull),                                                 // every rendezvous by CMA
            (16000, .pieces(upTo: 100_000)),                               // pieces up to 100,000 B, CMA above
            (MXLimits.rendezvousThresholdLocal, .split),                   // split with the sender (CMA when segmented)
            (MXLimits.rendezvousThresholdLocal, .measured),                // the default when ranks have CPUs
        ]
        for c in configurations {
            ep.close()
            var o = MXEndpointOptions(rendezvousThreshold: c.threshold)
            o.localPath = c.path
            ep = try mx.openEndpoint(key: key, options: o)
            let peerOptions = ["--threshold", String(c.threshold), "--local-path", c.path.description]
            var sizes = [0, 1] + around([c.threshold, 8192, 16384, piece, 2 * piece, 8 * piece, 65536, 1 << 20])
            if case .pieces(let limit) = c.path, limit < Int.max { sizes += around([limit]) }
            sizes = Array(Set(sizes.filter { $0 >= 0 })).sorted()
            try checkEcho(sizes: sizes, peerOptions: peerOptions)
            try checkEcho(sizes: sizes, peerOptions: peerOptions, short: 7, segmented: true)
            if c.path == .split {
                XCTAssertGreaterThan(ep.counter(.splitPulls), 0, "echoes were split with their sender")
                XCTAssertGreaterThan(ep.counter(.splitPushes), 0, "this sender wrote halves of its messages")
            }
        }
        XCTAssertGreaterThan(ep.counter(.rendezvousPulls), 0)
    }

    /// A sender that sleeps while the pair ring is full is woken as the receiver frees cells
    /// (it would otherwise sleep out its poll, a second, for every ring's worth).
    func testASenderSleepingOnAFullRingIsWokenAsTheReceiverDrains() throws {
        ep.close()
        var o = MXEndpointOptions()
        o.spinMicroseconds = 0
        o.sleepAfterMicroseconds = 0
        ep = try mx.openEndpoint(key: key, options: o)
        let start = monotonicNanoseconds()
        // 8 MiB by copy and 8 MiB by CMA (which the receiver pulls alone) for contrast, then
        // 200 eager messages of 8 KiB, which fill the ring many times over.
        try checkEcho(sizes: [8 << 20], peerOptions: ["--local-path", "pieces"])
        try checkEcho(sizes: [8 << 20], peerOptions: ["--local-path", "pull"])
        try checkSenders(1, count: 200, sizes: [8192])
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        XCTAssertGreaterThan(ep.counter(.wakeups), 0, "the sender slept and was woken")
        XCTAssertLessThan(seconds, 10, "nobody slept out a poll per ring's worth (\(seconds) s)")
    }

    func testEightSendersToOneReceiver() throws {
        try checkSenders(8, count: 300, sizes: [8, 100, 3000, 20000])
    }

    func testTenThousandUnexpectedMessagesFromAnotherProcess() throws {
        let n = 10_000
        let p = try spawnPeer("sender", ["--id", "1", "--count", String(n), "--sizes", "16,40,200"])
        let (peer, _) = try hello(id: 1)
        // Receive nothing yet: everything lands in the unexpected queue.
        let deadline = monotonicNanoseconds() + 60_000_000_000
        while ep.unexpectedCount < n && monotonicNanoseconds() < deadline { try ep.progress() }
        XCTAssertEqual(ep.unexpectedCount, n)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 200, alignment: 64)
        defer { buf.deallocate() }
        for seq in 0..<n {
            let st = try ep.wait(try ep.irecv(buf, matchInfo: 1 << 32 | UInt64(seq)), timeout: .seconds(10))
            XCTAssertEqual(st.messageLength, [16, 40, 200][seq % 3])
            XCTAssertNil(Pattern.firstMismatch(UnsafeRawBufferPointer(rebasing: buf[0..<st.messageLength]), seed: 100_000 + seq))
        }
        XCTAssertEqual(ep.unexpectedCount, 0)
        try done(peer)
        assertExit(p)
    }

    func testIssendCompletesOnlyOnceMatched() throws {
        let p = try spawnPeer("issend")
        let (peer, _) = try hello()
        XCTAssertEqual(try status(), 0, "the peer's issend stayed incomplete while nobody had received it")
        let st = try ep.wait(try ep.irecv(word, matchInfo: 5), timeout: .seconds(10))
        XCTAssertEqual(st.messageLength, 8)
        XCTAssertEqual(word.load(as: UInt64.self), 0xC0FFEE)
        XCTAssertEqual(try status(), 2, "and completed once matched")
        try done(peer)
        assertExit(p)
    }

    func testWrongKeyIsRefused() throws {
        let p = try spawnPeer("wrong-key")
        assertExit(p)
        XCTAssertEqual(try mx.info().refusedConnects, 1)
    }

    // MARK: faults

    func testKilledPeerIsReclaimedAndItsPartnersHearOfIt() throws {
        let p = try spawnPeer("rendezvous-then-hang")
        let (peer, _) = try hello()
        XCTAssertEqual(try status(), 1)
        XCTAssertEqual(ep.unexpectedCount, 1, "its rendezvous waits here, without data")
        let before = try mx.info()
        XCTAssertEqual(before.endpoints.count, 2)
        p.signal(SIGKILL)
        XCTAssertEqual(p.wait(), .signalled(SIGKILL))
        // Within a second, sends to it fail with a clear error.
        XCTAssertEqual(firstSendError(to: peer)?.code, .peerClosed)
        XCTAssertEqual(ep.unexpectedCount, 0, "its rendezvous can no longer be pulled and was dropped")
        XCTAssertGreaterThanOrEqual(ep.counter(.drops), 1)
        let after = try mx.info()
        XCTAssertEqual(after.endpoints.count, 1, "the backend reclaimed its endpoint")
        XCTAssertGreaterThan(after.grantsRevoked, before.grantsRevoked, "and revoked its grants")
        // Its endpoint slot is free again.
        let again = try mx.openEndpoint(key: 1)
        again.close()
    }

    func testKilledBackendGivesEveryFrontendAClearErrorWithinASecond() throws {
        let p = try spawnPeer("hold")
        _ = try hello()
        XCTAssertEqual(try status(), 1)
        let pending = try ep.irecv(word, matchInfo: 12345)
        let start = monotonicNanoseconds()
        backend.kill(SIGKILL)
        XCTAssertThrowsError(try ep.wait(pending, timeout: .seconds(5))) { XCTAssertEqual(($0 as? MXError)?.code, .backendDied) }
        XCTAssertLessThan(monotonicNanoseconds() - start, 1_000_000_000, "this frontend knew within a second")
        XCTAssertThrowsError(try ep.irecv(word, matchInfo: 1)) { XCTAssertEqual(($0 as? MXError)?.code, .backendDied) }
        assertExit(p, 42, within: 5)
        XCTAssertLessThan(monotonicNanoseconds() - start, 2_000_000_000, "the peer process knew and exited too")
        // A backend started afterwards serves new endpoints.
        ep.close()
        mx.finalize()
        try backend.start()
        mx = try backend.context()
        ep = try mx.openEndpoint(key: key)
        let me = try ep.connect(nicID: ep.nicID, endpointID: ep.endpointID, key: key)
        word.storeBytes(of: 77, as: UInt64.self)
        let s = try ep.isend(UnsafeRawBufferPointer(word), to: me, matchInfo: 3)
        let back = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { back.deallocate() }
        _ = try ep.wait(try ep.irecv(back, matchInfo: 3), timeout: .seconds(5))
        _ = try ep.wait(s)
        XCTAssertEqual(back.load(as: UInt64.self), 77)
    }

    func testAnIdleWaiterSleepsAndCostsNoCPU() throws {
        let p = try spawnPeer("hold")
        let (peer, pid) = try hello()
        XCTAssertEqual(try status(), 1)
        // The peer now waits for a message that does not come: once past its spin it sleeps in
        // poll (state S), and then a second of it must cost no CPU.
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while try processState(pid) != "S" && monotonicNanoseconds() < deadline { usleep(1_000) }
        XCTAssertEqual(try processState(pid), "S", "the idle waiter sleeps")
        let before = try cpuTicks(pid)
        usleep(1_000_000)
        let used = try cpuTicks(pid) - before
        XCTAssertLessThanOrEqual(used, 5, "an idle waiter used \(used) clock ticks of CPU in a second")
        // And a message still wakes it at once.
        let start = monotonicNanoseconds()
        try done(peer)
        assertExit(p, 0, within: 5)
        XCTAssertLessThan(monotonicNanoseconds() - start, 1_000_000_000)
    }

    /// The scheduler state letter of a process (R running, S sleeping), from /proc.
    func processState(_ pid: Int32) throws -> String {
        String(try statFields(pid)[0])
    }

    /// utime + stime of a process, in clock ticks, from /proc.
    func cpuTicks(_ pid: Int32) throws -> Int {
        let fields = try statFields(pid)
        return Int(fields[11])! + Int(fields[12])!
    }

    /// The fields of /proc/PID/stat after the command name.
    func statFields(_ pid: Int32) throws -> [Substring] {
        guard let f = fopen("/proc/\(pid)/stat", "r") else { throw MXError(.system, "no /proc/\(pid)/stat") }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 1024)
        guard fgets(&buf, 1024, f) != nil else { throw MXError(.system, "empty stat") }
        let line = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Array(line[line.index(after: line.lastIndex(of: ")")!)...].split(separator: " "))
    }

    func testAProgramThatOnlyPollsNoticesADeadBackend() throws {
        let pending = try ep.irecv(word, matchInfo: 4242)
        backend.kill(SIGKILL)
        let start = monotonicNanoseconds()
        var seen: MXError?
        while monotonicNanoseconds() - start < 3_000_000_000 {
            do {
                if try ep.test(pending) != nil { break }
            } catch {
                seen = error
                break
            }
        }
        XCTAssertEqual(seen?.code, .backendDied)
        XCTAssertLessThan(monotonicNanoseconds() - start, 1_000_000_000)
    }

    func testAnotherUserCanNeitherReachTheBackendNorOpenAnEndpoint() throws {
        guard getuid() == 0, access("/usr/bin/setpriv", X_OK) == 0 else {
            throw XCTSkip("needs root and setpriv to act as another user")
        }
        let peer = BuiltProducts.path("MyriXenTestPeer")
        func asNobody() -> (Int32, String) {
            runCapturing("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", peer, "other-user", "--socket", backend.socketPath])
        }
        // The socket's directory is private: the stranger cannot even reach it.
        let (code1, out1) = asNobody()
        XCTAssertEqual(code1, 0, out1)
        XCTAssertTrue(out1.contains("refused: backend unavailable"), out1)
        // Even with the directory opened up, the backend checks the caller's uid.
        chmod(backend.directory, 0o755)
        chmod(backend.socketPath, 0o777)
        let (code2, out2) = asNobody()
        XCTAssertEqual(code2, 0, out2)
        XCTAssertTrue(out2.contains("refused:"), out2)
        XCTAssertEqual(try mx.info().endpoints.count, 1, "no endpoint was opened for the stranger")
    }

    // MARK: exhaustion

    /// Waits (up to 5 s) until the backend's epoll set watches `count` descriptors: its listener
    /// and the connections it holds. Returns what it watches then.
    @discardableResult
    func waitForWatched(_ pid: Int32, _ count: Int) -> Int? {
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while epollWatchCount(of: pid) != count && monotonicNanoseconds() < deadline { usleep(2_000) }
        return epollWatchCount(of: pid)
    }

    /// Idle control connections (no handshake) to `socket`, and which of them the backend
    /// refused: it sent an error and closed them. Call `refusals` once the backend has
    /// answered someone who connected after all of them.
    func openIdle(_ n: Int, to socket: String) throws -> [ControlSocket] {
        try (0..<n).map { _ in try ControlSocket.connect(path: socket) }
    }

    func refusals(_ idle: [ControlSocket]) throws -> [(index: Int, error: MXError)] {
        var out: [(Int, MXError)] = []
        for (i, c) in idle.enumerated() where c.waitReadable(timeoutMs: 0) {
            guard case let .message(bytes, _) = try c.receive(wait: false) else { XCTFail("closed without a word"); continue }
            var msg = try ControlMessage.decode(bytes, fds: [])
            XCTAssertEqual(msg.header.type, .error)
            out.append((i, ControlMessage.decodeError(&msg.payload)))
        }
        return out
    }

    func mxInfo(_ socket: String) -> (code: Int32, output: String, seconds: Double) {
        let start = monotonicNanoseconds()
        let (code, out) = runCapturing(BuiltProducts.path("mx_info"), ["--socket", socket, "--no-start"])
        return (code, out, Double(monotonicNanoseconds() - start) / 1e9)
    }

    func testOneProcessGetsAtMostItsShareOfConnectionsAndOthersAreStillServed() throws {
        let b = try TestBackend()
        defer { b.stop() }
        let pid = b.process!.pid
        let cap = MXLimits.maxConnectionsPerProcess
        XCTAssertEqual(waitForWatched(pid, 1), 1, "at rest the backend watches its listener only")
        let cpuBefore = try cpuTicks(pid)
        var idle = try openIdle(cap + 8, to: b.socketPath)
        // Another process, queued behind the whole flood, is served at once.
        let info = mxInfo(b.socketPath)
        XCTAssertEqual(info.code, 0, info.output)
        XCTAssertTrue(info.output.contains("Board #0"), info.output)
        XCTAssertLessThan(info.seconds, 5, "mx_info waited behind idle connections")
        // Of this process's connections the backend holds `cap`; the rest heard why not.
        let refused = try refusals(idle)
        XCTAssertEqual(refused.map(\.index), Array(cap..<(cap + 8)))
        for r in refused {
            XCTAssertEqual(r.error.code, .tooManyConnections)
            XCTAssertTrue(r.error.message.contains("process \(getpid()) already holds \(cap) connections to the backend at \(b.socketPath), the limit for one process (\(cap)"), r.error.message)
        }
        // Every held connection is in the kernel's epoll set: a turn of the loop costs what is
        // ready, not what is open (rebuilding a poll array per turn made accepting quadratic).
        XCTAssertEqual(waitForWatched(pid, 1 + cap), 1 + cap)
        // A context of this process hears the reason too.
        XCTAssertThrowsError(try MXContext(socketPath: b.socketPath, startBackend: false)) { e in
            XCTAssertEqual((e as? MXError)?.code, .tooManyConnections)
            XCTAssertTrue("\(e)".contains("the limit for one process (\(cap)"), "\(e)")
        }
        // The flood cost the backend little, and holding it costs nothing.
        XCTAssertLessThanOrEqual(try cpuTicks(pid) - cpuBefore, 100, "accepting \(cap + 8) connections")
        let before = try cpuTicks(pid)
        usleep(1_000_000)
        XCTAssertLessThanOrEqual(try cpuTicks(pid) - before, 5, "a second with \(cap) idle connections")
        // Closed connections give their slots back.
        idle.removeAll()
        XCTAssertEqual(waitForWatched(pid, 1), 1)
        let mx = try MXContext(socketPath: b.socketPath, startBackend: false)
        mx.finalize()
    }

    func testTheBackendServesAtMostItsConnectionLimitInAll() throws {
        let b = try TestBackend(arguments: ["--max-connections", "8"])
        defer { b.stop() }
        let pid = b.process!.pid
        XCTAssertEqual(waitForWatched(pid, 1), 1)
        var idle = try openIdle(10, to: b.socketPath)
        let info = mxInfo(b.socketPath)
        let reason = "the backend at \(b.socketPath) already serves 8 connections, its limit in all (--max-connections 8)"
        XCTAssertEqual(info.code, 1, "refused: \(info.output)")
        XCTAssertTrue(info.output.contains("too many connections: " + reason), info.output)
        XCTAssertLessThan(info.seconds, 5, "refused at once, not left waiting")
        let refused = try refusals(idle)
        XCTAssertEqual(refused.map(\.index), [8, 9])
        for r in refused { XCTAssertTrue(r.error.message.contains(reason), r.error.message) }
        idle.removeLast(3) // two refused, one held
        XCTAssertEqual(waitForWatched(pid, 8), 8)
        XCTAssertEqual(mxInfo(b.socketPath).code, 0, "a slot came free")
    }

    func testOutOfDescriptorsTheBackendRefusesClearlyAndDoesNotSpin() throws {
        let b = try TestBackend(descriptorLimit: 40)
        defer { b.stop() }
        let pid = b.process!.pid
        let held = try b.context() // a frontend that was there before the flood
        defer { held.finalize() }
        XCTAssertEqual(waitForWatched(pid, 2), 2)
        var idle = try openIdle(60, to: b.socketPath)
        // The backend does not spin on its listener (accept failing with EMFILE while frontends
        // wait), and serves what it holds.
        let before = try cpuTicks(pid)
        usleep(1_000_000)
        XCTAssertLessThanOrEqual(try cpuTicks(pid) - before, 5, "a second at the descriptor limit")
        let start = monotonicNanoseconds()
        XCTAssertEqual(try held.info().backendPID, pid)
        XCTAssertLessThan(monotonicNanoseconds() - start, 1_000_000_000)
        // Others get a clear answer at once: no descriptor is left for them.
        let info = mxInfo(b.socketPath)
        XCTAssertEqual(info.code, 1, "refused: \(info.output)")
        XCTAssertTrue(info.output.contains("too many connections: the backend at \(b.socketPath) is out of file descriptors (its limit is 40)"), info.output)
        XCTAssertLessThan(info.seconds, 5, "refused at once, not left waiting")
        // The flood: held until the descriptors ran out, the rest refused with the reason.
        let refused = try refusals(idle)
        let first = refused.first?.index ?? idle.count
        XCTAssertGreaterThan(first, 10, "connections are held until the limit")
        XCTAssertEqual(refused.map(\.index), Array(first..<60), "and every later one is refused")
        for r in refused { XCTAssertTrue(r.error.message.contains("out of file descriptors (its limit is 40)"), r.error.message) }
        idle.removeAll()
        XCTAssertEqual(waitForWatched(pid, 2), 2)
        XCTAssertEqual(mxInfo(b.socketPath).code, 0, "descriptors came free")
    }

    func testShortOfMemoryAtAcceptTheBackendPausesItsListenerInsteadOfSpinning() throws {
        // accept4 failing with ENOMEM or ENOBUFS (here because a seccomp filter makes the kernel
        // say so) leaves the frontend in the backlog and the level-triggered listener ready:
        // the backend spun at 100% CPU for as long as memory was short.
        guard access("/usr/bin/cc", X_OK) == 0 else { throw XCTSkip("needs a C compiler (cc) for the fault injector") }
        let source = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/") + "/Programs/fail_syscall.c"
        let scratch = try TestBackend(start: false)
        defer { scratch.stop() }
        let tool = scratch.directory + "/fail_syscall"
        let (built, compiler) = runCapturing("/usr/bin/cc", ["-O2", "-o", tool, source])
        XCTAssertEqual(built, 0, compiler)
        for error in ["ENOMEM", "ENOBUFS"] {
            let p = try ChildProcess.spawnTied(tool, ["accept4", error, BuiltProducts.path("myrback"), "--foreground", "--socket", scratch.socketPath])
            defer { if p.poll() == nil { p.signal(SIGKILL); _ = p.wait() } }
            var waiting: ControlSocket?
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while waiting == nil && p.poll() == nil && monotonicNanoseconds() < deadline {
                waiting = try? ControlSocket.connect(path: scratch.socketPath) // queued: never accepted
                if waiting == nil { usleep(5_000) }
            }
            guard let frontend = waiting else { return XCTFail("\(error): no backend listening at \(scratch.socketPath)") }
            defer { frontend.close() }
            let before = try cpuTicks(p.pid)
            usleep(1_000_000)
            XCTAssertLessThanOrEqual(try cpuTicks(p.pid) - before, 5, "\(error): a second with a frontend it cannot accept")
            XCTAssertNil(p.poll(), "\(error): the backend runs on")
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(seconds: 5), .exited(0), "\(error): and ends cleanly when told")
        }
    }

    // MARK: scale

    func testSixtyFourEndpointsAllPairsStayUnderOneGiB() throws {
        ep.close()
        ep = nil
        backend.stop()
        backend = try TestBackend(boards: 2, endpoints: 32)
        mx = try backend.context()
        var eps: [MXEndpoint] = []
        for _ in 0..<64 { eps.append(try mx.openEndpoint(key: 9)) }
        var addr = [[MXEndpointAddress?]](repeating: [MXEndpointAddress?](repeating: nil, count: 64), count: 64)
        for i in 0..<64 {
            for j in (i + 1)..<64 {
                addr[i][j] = try eps[i].connect(nicID: eps[j].nicID, endpointID: eps[j].endpointID, key: 9)
            }
        }
        // Every pair exchanges one message each way, and each side checks it.
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { buf.deallocate() }
        for i in 0..<64 {
            for j in (i + 1)..<64 {
                let tag = UInt64(i << 8 | j)
                buf.storeBytes(of: tag, as: UInt64.self)
                _ = try eps[i].wait(try eps[i].isend(UnsafeRawBufferPointer(buf), to: addr[i][j]!, matchInfo: tag))
                let st = try eps[j].wait(try eps[j].irecv(buf, matchInfo: tag), timeout: .seconds(5))
                XCTAssertEqual(buf.load(as: UInt64.self), tag)
                _ = try eps[j].wait(try eps[j].isend(UnsafeRawBufferPointer(buf), to: st.source!, matchInfo: tag))
                _ = try eps[i].wait(try eps[i].irecv(buf, matchInfo: tag), timeout: .seconds(5))
            }
        }
        let info = try mx.info()
        XCTAssertEqual(info.endpoints.count, 64)
        XCTAssertTrue(info.endpoints.allSatisfy { $0.peers == 63 })
        let perEndpoint = ProtectedPage.size + UnprotectedPage.size
        let perPair = 2 * (RingLayout.headerPage + info.ringBytes)
        XCTAssertEqual(info.sharedMemoryBytes, 64 * perEndpoint + 64 * 63 / 2 * perPair, "the growth law docs/myrixen.md states")
        XCTAssertLessThan(info.sharedMemoryBytes, 1 << 30)
        eps.forEach { $0.close() }
    }
}
