// mx_pingpong: half-round-trip latency and windowed bandwidth between two endpoints of this
// host, in the OSU style. One command: the first process starts the second itself.
import ArgumentParser
import MyriXen
#if canImport(Glibc)
import Glibc
#endif

enum Tag {
    static let hello: UInt64 = 0x4845_4C4C_4F
    static let ping: UInt64 = 1
    static let data: UInt64 = 2
    static let ack: UInt64 = 3
    static let done: UInt64 = 4
}

struct PingPong: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mx_pingpong",
        abstract: "Latency and bandwidth between two processes through the MyriXen channel layer.",
        discussion: "Latency is half the round trip; bandwidth uses a window of isends and a 4-byte ack, as osu_bw does.")

    @Option(name: .shortAndLong, help: "Message sizes as min:max (bytes, doubling from min).")
    var m: String = "1:4194304"

    @Option(name: .shortAndLong, help: "Iterations for sizes up to 8 KiB (default 10000 latency / 100 bandwidth; above 8 KiB 1000 / 20). Given, a tenth of it above 8 KiB.")
    var i: Int?

    @Option(name: .shortAndLong, help: "Warm-up iterations (default 100 latency / 10 bandwidth).")
    var x: Int?

    enum Measure: String, ExpressibleByArgument, CaseIterable { case both, latency, bandwidth }

    @Option(name: .long, help: "What to measure: both, latency or bandwidth (the other column prints 0).")
    var measure: Measure = .both

    @Option(name: [.customShort("W"), .long], help: "Bandwidth window (messages in flight).")
    var window: Int = 64

    @Option(name: .long, help: "Rendezvous threshold in bytes (default $MYRIXEN_RNDV_THRESHOLD or \(MXLimits.rendezvousThresholdLocal)).")
    var threshold: Int?

    @Option(name: .long, help: "Backend socket (default: $MYRIXEN_SOCKET or /tmp/myrixen-<uid>/myrback.sock).")
    var socket: String?

    @Flag(name: .customLong("validate"), help: "Check every received byte.")
    var checkData = false

    @Flag(name: .long, help: "Print the board as mx_info shows it, with both endpoints still open, at the end.")
    var showBoard = false

    @Option(name: .long, help: .hidden) var peerNic: String?
    @Option(name: .long, help: .hidden) var peerEndpoint: Int?
    @Option(name: .long, help: .hidden) var peerKey: UInt32?
    @Option(name: .long, help: .hidden) var parentPid: Int32?

    func validate() throws {
        guard sizes != nil else { throw ValidationError("-m must be MIN:MAX with 0 <= MIN <= MAX <= 1 GiB, e.g. -m 1:4194304; got \(m)") }
        if let i, i < 1 || i > 1_000_000_000 { throw ValidationError("-i must be 1...1000000000, not \(i)") }
        if let x, x < 0 || x > 1_000_000_000 { throw ValidationError("-x must be 0...1000000000, not \(x)") }
        guard window >= 1 && window <= 1024 else { throw ValidationError("--window must be 1...1024") }
    }

    var sizes: [Int]? {
        let parts = m.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]), lo >= 0, lo <= hi, hi <= 1 << 30 else { return nil }
        var out: [Int] = []
        var s = lo
        if s == 0 { out.append(0); s = 1 }
        while s <= hi { out.append(s); s *= 2 }
        return out
    }

    func run() throws {
        let mx = try MXContext(socketPath: socket)
        defer { mx.finalize() }
        let options = MXEndpointOptions(rendezvousThreshold: threshold)
        if let nicText = peerNic, let ep = peerEndpoint, let key = peerKey, let nic = UInt64(nicText, radix: 16) {
            if let parent = parentPid { ChildProcess.dieWithParent(parent) }
            try runResponder(mx, options, nic: nic, endpoint: ep, key: key)
        } else {
            try runInitiator(mx, options)
        }
    }

    func runInitiator(_ mx: MXContext, _ options: MXEndpointOptions) throws {
        let key = UInt32(truncatingIfNeeded: monotonicNanoseconds()) | 1
        let ep = try mx.openEndpoint(key: key, options: options)
        defer { ep.close() }
        var args = ["--peer-nic", String(ep.nicID, radix: 16), "--peer-endpoint", String(ep.endpointID),
                    "--peer-key", String(key), "--parent-pid", String(getpid()), "-m", m, "--window", String(window), "--socket", mx.socketPath]
        if let i { args += ["-i", String(i)] }
        if let x { args += ["-x", String(x)] }
        if let threshold { args += ["--threshold", String(threshold)] }
        args += ["--measure", measure.rawValue]
        if checkData { args.append("--validate") }
        let child = try ChildProcess.spawn(ChildProcess.currentExecutable(), args)
        defer { _ = child.wait(seconds: 10) }
        var hello: UInt64 = 0
        let status = try withUnsafeMutableBytes(of: &hello) { b in
            try ep.wait(try ep.irecv(b, matchInfo: Tag.hello), timeout: .seconds(30))
        }
        guard let peer = status.source else { throw MXError(.protocolError, "hello without a source") }
        let bench = Bench(ep: ep, peer: peer, initiator: true, command: self)
        print("# MyriXen mx_pingpong (emulated Myri-10G, \(mx.hostname), same host, rendezvous above \(ep.rendezvousThreshold) B)")
        print(pad("# Size", 10) + lpad("Latency (us)", 18) + lpad("Bandwidth (MB/s)", 18))
        for size in sizes! {
            let lat = measure != .bandwidth ? try bench.latency(size: size) : 0
            let bw = measure != .latency ? try bench.bandwidth(size: size) : 0
            print(pad(String(size), 10) + lpad(fmt(lat), 18) + lpad(fmt(bw), 18))
            fflush(nil)
        }
        if showBoard {
            print("")
            print(MXInfoReport.render(try mx.info()))
        }
        try bench.finish()
    }

    func runResponder(_ mx: MXContext, _ options: MXEndpointOptions, nic: UInt64, endpoint: Int, key: UInt32) throws {
        let ep = try mx.openEndpoint(options: options)
        defer { ep.close() }
        let peer = try ep.connect(nicID: nic, endpointID: endpoint, key: key)
        var hello: UInt64 = 1
        _ = try withUnsafeBytes(of: &hello) { b in try ep.wait(try ep.isend(b, to: peer, matchInfo: Tag.hello)) }
        let bench = Bench(ep: ep, peer: peer, initiator: false, command: self)
        for size in sizes! {
            if measure != .bandwidth { _ = try bench.latency(size: size) }
            if measure != .latency { _ = try bench.bandwidth(size: size) }
        }
        try bench.finish()
    }
}

func fmt(_ v: Double) -> String {
    let scaled = Int((v * 100).rounded())
    let frac = scaled % 100
    return "\(scaled / 100).\(frac < 10 ? "0" : "")\(frac)"
}
func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }

final class Bench {
    let ep: MXEndpoint
    let peer: MXEndpointAddress
    let initiator: Bool
    let command: PingPong
    let maxSize: Int
    let send: UnsafeMutableRawBufferPointer
    let recv: UnsafeMutableRawBufferPointer
    var requests: [MXRequest] = []

    init(ep: MXEndpoint, peer: MXEndpointAddress, initiator: Bool, command: PingPong) {
        self.ep = ep
        self.peer = peer
        self.initiator = initiator
        self.command = command
        maxSize = max(command.sizes!.last ?? 1, 4)
        send = .allocate(byteCount: maxSize * 1, alignment: 4096)
        recv = .allocate(byteCount: maxSize * 1, alignment: 4096)
        MXPattern.fill(send, seed: 0)
        recv.initializeMemory(as: UInt8.self, repeating: 0)
        requests.reserveCapacity(command.window)
    }

    deinit {
        send.deallocate()
        recv.deallocate()
    }

    func counts(size: Int, latency: Bool) -> (Int, Int) {
        let big = size > 8192
        let iters = command.i.map { big ? max(1, $0 / 10) : $0 } ?? (latency ? (big ? 1000 : 10000) : (big ? 20 : 100))
        let warm = command.x.map { big ? $0 / 10 : $0 } ?? (latency ? (big ? 10 : 100) : (big ? 2 : 10))
        return (iters, warm)
    }

    func check(_ size: Int) throws {
        guard command.checkData else { return }
        if let k = MXPattern.firstMismatch(UnsafeRawBufferPointer(rebasing: recv[0..<size]), seed: 0) {
            throw MXError(.protocolError, "byte \(k) of a \(size)-byte message is \(recv[k]), expected \(MXPattern.byte(k, seed: 0))")
        }
    }

    /// Half round trip in microseconds.
    func latency(size: Int) throws -> Double {
        let (iters, warm) = counts(size: size, latency: true)
        let sbuf = UnsafeRawBufferPointer(rebasing: send[0..<size])
        let rbuf = UnsafeMutableRawBufferPointer(rebasing: recv[0..<size])
        var start: UInt64 = 0
        for it in 0..<(iters + warm) {
            if it == warm { start = monotonicNanoseconds() }
            if initiator {
                _ = try ep.wait(try ep.isend(sbuf, to: peer, matchInfo: Tag.ping))
                _ = try ep.wait(try ep.irecv(rbuf, matchInfo: Tag.ping))
            } else {
                _ = try ep.wait(try ep.irecv(rbuf, matchInfo: Tag.ping))
                _ = try ep.wait(try ep.isend(sbuf, to: peer, matchInfo: Tag.ping))
            }
        }
        let elapsed = monotonicNanoseconds() - start
        try check(size)
        return Double(elapsed) / 1000.0 / Double(2 * iters)
    }

    /// MB/s with a window of isends and a 4-byte ack per window.
    func bandwidth(size: Int) throws -> Double {
        let (iters, warm) = counts(size: size, latency: false)
        let sbuf = UnsafeRawBufferPointer(rebasing: send[0..<size])
        let rbuf = UnsafeMutableRawBufferPointer(rebasing: recv[0..<size])
        let ackBuf = UnsafeMutableRawBufferPointer(rebasing: recv[0..<4])
        let ackSend = UnsafeRawBufferPointer(rebasing: send[0..<4])
        var start: UInt64 = 0
        for it in 0..<(iters + warm) {
            if it == warm { start = monotonicNanoseconds() }
            requests.removeAll(keepingCapacity: true)
            if initiator {
                for _ in 0..<command.window { requests.append(try ep.isend(sbuf, to: peer, matchInfo: Tag.data)) }
                for r in requests { _ = try ep.wait(r) }
                _ = try ep.wait(try ep.irecv(ackBuf, matchInfo: Tag.ack))
            } else {
                for _ in 0..<command.window { requests.append(try ep.irecv(rbuf, matchInfo: Tag.data)) }
                for r in requests { _ = try ep.wait(r) }
                _ = try ep.wait(try ep.isend(ackSend, to: peer, matchInfo: Tag.ack))
            }
        }
        let elapsed = monotonicNanoseconds() - start
        if !initiator { try check(size) }
        return Double(size) * Double(iters) * Double(command.window) / (Double(elapsed) / 1e9) / 1e6
    }

    /// Both sides agree they are done before closing (so no message is cut off).
    func finish() throws {
        var token: UInt32 = 0
        try withUnsafeMutableBytes(of: &token) { b in
            if initiator {
                _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(b), to: peer, matchInfo: Tag.done))
                _ = try ep.wait(try ep.irecv(b, matchInfo: Tag.done))
            } else {
                _ = try ep.wait(try ep.irecv(b, matchInfo: Tag.done))
                _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(b), to: peer, matchInfo: Tag.done))
            }
        }
    }
}

PingPong.main()
