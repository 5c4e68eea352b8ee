// mpi_pingpong: the OSU latency and bandwidth method through the Swift MPI library, so its
// cost over the channel layer (mx_pingpong) can be measured. Ranks 0 and 1 measure; more ranks
// only add peers to them:
//   swiftrun -n 2 mpi_pingpong [-m MIN:MAX] [-i ITERS] [-x WARMUP] [--validate]
// --validate: every message carries MXPattern for its size, iteration and direction, and every
// receive is checked byte by byte (then cleared, so one that delivers nothing fails); each
// measuring rank then says how many receives it checked. A wrong byte aborts the job.
#if canImport(Glibc)
import Glibc
#endif
import MPI
import MyriXen

func complain(_ s: String) {
    let line = "mpi_pingpong: \(s)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

let usage = "usage: swiftrun -n 2 mpi_pingpong [-m MIN:MAX] [-i ITERS] [-x WARMUP] [--validate]"
/// The command line; a bad or unknown option ends the program with a word and exit code 2.
func parseOptions() -> (sizes: String, iters: Int?, warm: Int?, validate: Bool) {
    var sizes = "1:4194304", iters: Int?, warm: Int?, validate = false
    var argv = CommandLine.arguments.dropFirst()
    while let a = argv.popFirst() {
        func value() -> String {
            guard let v = argv.popFirst() else { complain("\(a) needs a value (\(usage))"); exit(2) }
            return v
        }
        func count(_ lowest: Int) -> Int {
            let v = value()
            guard let n = Int(v), n >= lowest, n <= 1_000_000_000 else { complain("\(a) must be \(lowest)...1000000000, not '\(v)'"); exit(2) }
            return n
        }
        switch a {
        case "-m": sizes = value()
        case "-i": iters = count(1)
        case "-x": warm = count(0)
        case "--validate": validate = true
        case "-h", "--help": print(usage); exit(0)
        default: complain("unknown option \(a) (\(usage))"); exit(2)
        }
    }
    return (sizes, iters, warm, validate)
}
let (sizeText, iterOverride, warmOverride, validate) = parseOptions()
let range = sizeText.split(separator: ":", omittingEmptySubsequences: false).compactMap { Int($0) }
guard range.count == 2, range[0] >= 1, range[0] <= range[1], range[1] <= 1 << 30 else {
    complain("-m must be MIN:MAX with 1 <= MIN <= MAX <= 1073741824 (1 GiB), not '\(sizeText)'")
    exit(2)
}
let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
guard world.size >= 2 else {
    complain("needs 2 ranks (swiftrun -n 2 mpi_pingpong)")
    exit(2)
}
// Ranks 0 and 1 measure. Any others are bystanders: every rank first exchanges a message with
// every other, so 0 and 1 carry links to all of them while they measure (the cost of having
// peers, on this host or others, to a pair's own path).
let me = world.rank, peer = me < 2 ? 1 - me : -1
if world.size > 2 {
    var token = [Int32(me)]
    let outgoing = try (0..<world.size).filter { $0 != me }.map { try world.isend(token, to: $0, tag: 9) }
    for q in 0..<world.size where q != me { token = try world.receive(Int32.self, from: .rank(q), tag: .value(9)).0 }
    _ = try Request.waitAll(outgoing)
}
let maxSize = range[1], window = 64
let send = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: maxSize)
let recv = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: maxSize)
send.initialize(repeating: 1)
recv.initialize(repeating: 0)

/// --validate: a message's bytes, and the check of a receive (then cleared to zeros, which the
/// pattern never is). `seed` tells size, iteration and direction apart.
var checked = 0
@inline(__always) func seed(_ size: Int, _ i: Int, from sender: Int) -> Int { size &* 1_000_003 &+ i &* 2 &+ sender }
@MainActor func fill(_ b: UnsafeMutableBufferPointer<UInt8>, _ seed: Int) {
    if validate { MXPattern.fill(UnsafeMutableRawBufferPointer(b), seed: seed) }
}
/// (`what` is an autoclosure: without --validate, timing loops build no strings.)
@MainActor func check(_ b: UnsafeMutableBufferPointer<UInt8>, _ seed: Int, _ what: @autoclosure () -> String) {
    guard validate else { return }
    if let k = MXPattern.firstMismatch(UnsafeRawBufferPointer(b), seed: seed) {
        let why = "\(what()): byte \(k) of a \(b.count)-byte message from rank \(peer) is \(b[k]), expected \(MXPattern.byte(k, seed: seed))"
        complain(why)
        mpi.abort(code: 1, message: "mpi_pingpong --validate: " + why)
    }
    b.update(repeating: 0)
    checked += 1
}

func counts(_ size: Int, latency: Bool) -> (Int, Int) {
    let big = size > 8192
    let iters = iterOverride.map { big ? max(1, $0 / 10) : $0 } ?? (latency ? (big ? 1000 : 10000) : (big ? 20 : 100))
    let warm = warmOverride.map { big ? $0 / 10 : $0 } ?? (latency ? (big ? 10 : 100) : (big ? 2 : 10))
    return (iters, warm)
}

func fmt(_ v: Double) -> String {
    let s = Int((v * 100).rounded())
    return "\(s / 100).\(s % 100 < 10 ? "0" : "")\(s % 100)"
}
func pad(_ s: String, _ n: Int, left: Bool) -> String {
    s.count >= n ? s : (left ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
}

if me == 0 {
    print("# Swift MPI mpi_pingpong (MyriXen MPI, rank 0 on \(mpi.processorName), \(world.size) ranks)")
    print(pad("# Size", 10, left: false) + pad("Latency (us)", 18, left: true) + pad("Bandwidth (MB/s)", 18, left: true))
}
var size = range[0]
while size <= range[1] {
    let s = UnsafeBufferPointer(rebasing: send[0..<size])
    let r = UnsafeMutableBufferPointer(rebasing: recv[0..<size])
    // Latency: blocking send and receive, half the round trip.
    var (iters, warm) = counts(size, latency: true)
    try world.barrier()
    var t0 = 0.0
    for i in 0..<(iters + warm) where peer >= 0 {
        if i == warm { t0 = MPIEnvironment.wtime() }
        if me == 0 {
            fill(send, seed(size, i, from: 0))
            try world.send(s, to: peer, tag: 1)
            try world.receive(into: r, from: .rank(peer), tag: .value(1))
            check(r, seed(size, i, from: 1), "latency, iteration \(i)")
        } else {
            try world.receive(into: r, from: .rank(peer), tag: .value(1))
            check(r, seed(size, i, from: 0), "latency, iteration \(i)")
            fill(send, seed(size, i, from: 1))
            try world.send(s, to: peer, tag: 1)
        }
    }
    let latency = (MPIEnvironment.wtime() - t0) * 1e6 / Double(2 * iters)
    // Bandwidth: a window of non-blocking sends, then a 4-byte ack.
    (iters, warm) = counts(size, latency: false)
    try world.barrier()
    for i in 0..<(iters + warm) where peer >= 0 {
        if i == warm { t0 = MPIEnvironment.wtime() }
        // (The window's messages share one buffer each side: --validate checks what is in the
        // receive buffer once the window completed, and the ack.)
        if me == 0 {
            var reqs: [Request<Void>] = []
            reqs.reserveCapacity(window)
            fill(send, seed(size, i, from: 0))
            for _ in 0..<window { reqs.append(try world.isend(unsafe: s, to: peer, tag: 2)) }
            _ = try Request.waitAll(reqs)
            let ack = UnsafeMutableBufferPointer(rebasing: recv[0..<4])
            try world.receive(into: ack, from: .rank(peer), tag: .value(3))
            check(ack, seed(4, i, from: 1), "bandwidth ack, iteration \(i)")
        } else {
            var reqs: [Request<Int>] = []
            reqs.reserveCapacity(window)
            for _ in 0..<window { reqs.append(try world.ireceive(unsafe: r, from: .rank(peer), tag: .value(2))) }
            _ = try Request.waitAll(reqs)
            check(r, seed(size, i, from: 0), "bandwidth, iteration \(i)")
            let ack = UnsafeMutableBufferPointer(rebasing: send[0..<4])
            fill(ack, seed(4, i, from: 1))
            try world.send(UnsafeBufferPointer(ack), to: peer, tag: 3)
        }
    }
    let bandwidth = Double(size) * Double(iters) * Double(window) / (MPIEnvironment.wtime() - t0) / 1e6
    if me == 0 { print(pad(String(size), 10, left: false) + pad(fmt(latency), 18, left: true) + pad(fmt(bandwidth), 18, left: true)) }
    size *= 2
}
if validate && peer >= 0 { print("# rank \(me) checked \(checked) receives, every byte") }
