// A peer process for the multi-process tests. It opens an endpoint on the test's backend,
// connects to the test's endpoint, says hello (so the test learns its address) and plays one
// role. It checks everything it receives and reports by exit code and stderr.
#if canImport(Glibc)
import Glibc
#endif
import MyriXen
import MyriXenTestSupport

func fail(_ message: String, code: Int32 = 3) -> Never {
    let line = "testpeer[\(getpid())]: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(code)
}

func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

func run(_ args: [String]) throws {
    guard let role = args.first else { fail("usage: MyriXenTestPeer ROLE --socket S --nic HEX --ep N --key K [...]", code: 2) }
    guard let socket = option(args, "--socket") else { fail("--socket is required", code: 2) }
    let nic = UInt64(option(args, "--nic") ?? "0", radix: 16) ?? 0
    let targetEndpoint = Int(option(args, "--ep") ?? "0") ?? 0
    let targetKey = UInt32(option(args, "--key") ?? "0") ?? 0
    let peerID = Int(option(args, "--id") ?? "0") ?? 0
    let count = Int(option(args, "--count") ?? "1") ?? 1
    let sizes = (option(args, "--sizes") ?? "").split(separator: ",").compactMap { Int($0) }
    if let parent = option(args, "--parent-pid").flatMap({ Int32($0) }) { ChildProcess.dieWithParent(parent) }

// Roles that must fail before any endpoint works.
if role == "other-user" {
    do throws(MXError) {
        let mx = try MXContext(socketPath: socket, startBackend: false)
        _ = try mx.openEndpoint()
        fail("another user opened an endpoint", code: 1)
    } catch {
        print("refused: \(error.code.rawValue)")
        exit(0)
    }
}

do {
    let mx = try MXContext(socketPath: socket, startBackend: false)
    // --threshold and --local-path: the endpoint's eager limit and the way its rendezvous
    // messages of this host move (else the defaults and their environment overrides).
    var options = MXEndpointOptions(rendezvousThreshold: option(args, "--threshold").flatMap { Int($0) })
    if let w = option(args, "--local-path") {
        guard let path = MXLocalPath(parsing: w) else { fail("--local-path must be \(MXLocalPath.valuesInWords)", code: 2) }
        options.localPath = path
    }
    let ep = try mx.openEndpoint(key: 0x7E57, options: options)
    if role == "wrong-key" {
        do throws(MXError) {
            _ = try ep.connect(nicID: nic, endpointID: targetEndpoint, key: targetKey &+ 1)
            fail("connect with a wrong key succeeded", code: 1)
        } catch {
            guard error.code == .badConnectionKey else { fail("wrong error \(error)") }
            print("refused: \(error.message)")
            exit(0)
        }
    }
    let test = try ep.connect(nicID: nic, endpointID: targetEndpoint, key: targetKey)
    let word = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    word.storeBytes(of: UInt64(getpid()), as: UInt64.self)
    _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(word), to: test, matchInfo: PeerTag.hello | UInt64(peerID)), timeout: .seconds(30))

    func sendStatus(_ value: UInt64) throws(MXError) {
        word.storeBytes(of: value, as: UInt64.self)
        _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(word), to: test, matchInfo: PeerTag.status), timeout: .seconds(30))
    }
    func waitDone() throws(MXError) {
        _ = try ep.wait(try ep.irecv(word, matchInfo: PeerTag.done), timeout: .seconds(60))
    }

    switch role {
    case "echo":
        // Receive each size, check it byte for byte, send it back. With --pause-ms, first
        // compute (call nothing) that long. With --short N, receive into a buffer N bytes
        // shorter (the message is truncated) and send back what was taken.
        if let ms = option(args, "--pause-ms").flatMap({ UInt32($0) }) { usleep(ms * 1000) }
        let short = option(args, "--short").flatMap { Int($0) } ?? 0
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(sizes.max() ?? 1, 1), alignment: 64)
        for size in sizes {
            let kept = max(size - short, 0)
            let view = UnsafeMutableRawBufferPointer(rebasing: buf[0..<kept])
            let st = try ep.wait(try ep.irecv(view, matchInfo: UInt64(size)), timeout: .seconds(60))
            guard st.messageLength == size, st.transferredLength == kept else {
                fail("size \(size): got \(st.messageLength) bytes, transferred \(st.transferredLength), not \(kept)")
            }
            if let bad = Pattern.firstMismatch(UnsafeRawBufferPointer(view), seed: size) { fail("size \(size): byte \(bad) differs") }
            _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(view), to: test, matchInfo: PeerTag.echo | UInt64(size)), timeout: .seconds(60))
        }
        try waitDone()
    case "sender":
        // `count` messages, sizes cycling, each with (id, sequence) in its match info.
        let maxSize = max(sizes.max() ?? 8, 8)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: maxSize * count, alignment: 64)
        var requests: [MXRequest] = []
        for seq in 0..<count {
            let size = sizes.isEmpty ? 8 : sizes[seq % sizes.count]
            let view = UnsafeMutableRawBufferPointer(rebasing: buf[(seq * maxSize)..<(seq * maxSize + size)])
            Pattern.fill(view, seed: peerID * 100_000 + seq)
            requests.append(try ep.isend(UnsafeRawBufferPointer(view), to: test, matchInfo: UInt64(peerID) << 32 | UInt64(seq)))
        }
        for r in requests { _ = try ep.wait(r, timeout: .seconds(120)) }
        try waitDone()
    case "send-and-close":
        // Eager messages complete once queued; closing right after must still deliver them
        // (over the wire the endpoint waits for their acks, resending what was lost).
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(sizes.max() ?? 8, 8), alignment: 64)
        for seq in 0..<count {
            let size = sizes.isEmpty ? 8 : sizes[seq % sizes.count]
            let view = UnsafeMutableRawBufferPointer(rebasing: buf[0..<size])
            Pattern.fill(view, seed: peerID * 100_000 + seq)
            _ = try ep.wait(try ep.isend(UnsafeRawBufferPointer(view), to: test, matchInfo: UInt64(peerID) << 32 | UInt64(seq)), timeout: .seconds(30))
        }
        ep.close()
        mx.finalize()
        exit(0)
    case "issend":
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        payload.storeBytes(of: UInt64(0xC0FFEE), as: UInt64.self)
        let r = try ep.issend(UnsafeRawBufferPointer(payload), to: test, matchInfo: 5)
        // Nobody has matched it yet: it must stay incomplete.
        let until = monotonicNanoseconds() + 200_000_000
        var early = false
        while monotonicNanoseconds() < until { if try ep.test(r) != nil { early = true; break } }
        try sendStatus(early ? 1 : 0)
        _ = try ep.wait(r, timeout: .seconds(30))
        try sendStatus(2)
        try waitDone()
    case "rendezvous-then-hang":
        // Leave a large message at the test and block; the test kills us.
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        Pattern.fill(big, seed: 1)
        _ = try ep.isend(UnsafeRawBufferPointer(big), to: test, matchInfo: 9)
        try sendStatus(1)
        try waitDone()
        fail("was not killed")
    case "hold":
        // Block in a wait. A message ends it (exit 0); a dead backend ends it with an
        // error (exit 42 with the error we saw).
        try sendStatus(1)
        let start = monotonicNanoseconds()
        do throws(MXError) {
            try waitDone()
            print("woken by a message")
            exit(0)
        } catch {
            let ms = (monotonicNanoseconds() - start) / 1_000_000
            print("\(error.code.rawValue) after \(ms) ms: \(error.message)")
            exit(error.code == .backendDied ? 42 : 1)
        }
    default:
        fail("unknown role \(role)", code: 2)
    }
    ep.close()
    mx.finalize()
}
}

do { try run(Array(CommandLine.arguments.dropFirst())) } catch { fail("\(error)") }
