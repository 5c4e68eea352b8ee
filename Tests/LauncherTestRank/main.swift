// A Swift rank for the launcher tests. Modes (argv[1]):
//   ring            bootstrap, pass a token around all ranks through the channel layer
//   exit N R        rank R exits with code N before speaking PMI; the others bootstrap
//   vanish R        rank R exits 0 at once without PMI; the others wait in a barrier
//   abort N R       rank R asks PMI to abort with code N after bootstrap
//   quit R          bootstrap; rank R then exits 0 without finalizing, while the others wait
//                   for a message from it on the channel layer (as in MPI_Barrier)
//   hang            bootstrap, print "ready", then sleep until killed
//   stdin           rank 0 echoes its standard input, uppercased, line by line
//   lines N         every rank prints N long lines, each tagged with its rank
//   guess           bootstrap; rank 1 tries rank 0's endpoint with the key anyone could compute
//                   from the KVS name (FNV-1a of kvs_<pid>_0, what every endpoint had) and
//                   says whether it was refused; every rank prints its key; then the ring
//   where           bootstrap; print the host, the board's NIC id and the IPv4 addresses this
//                   rank sees, then every rank's host as read back from the key-value space
#if canImport(Glibc)
import Glibc
#endif
import Bootstrap
import MyriXen
import PMI

func out(_ s: String) {
    let line = s + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

func fail(_ s: String) -> Never {
    let line = "rank error: \(s)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(3)
}

let args = Array(CommandLine.arguments.dropFirst())
let mode = args.first ?? "ring"
let myRank = Int(String(cString: getenv("PMI_RANK") ?? strdup("0"))) ?? 0

do {
    switch mode {
    case "ring", "guess":
        let world = try MXWorld.bootstrap()
        if mode == "guess" {
            var guessed: UInt32 = 2_166_136_261
            for b in world.pmi.kvsname.utf8 { guessed = (guessed ^ UInt32(b)) &* 16_777_619 }
            if world.rank == 1 {
                let card = try world.pmi.get(MXWorld.cardKeyPrefix + "0") ?? ""
                let parts = card.split(separator: "/")
                guard parts.count >= 2, let nic = UInt64(parts[0].split(separator: ":").joined(), radix: 16), let ep = Int(parts[1]) else {
                    fail("rank 0's card '\(card)' has no address")
                }
                var outcome = "accepted"
                do { _ = try world.endpoint.connect(nicID: nic, endpointID: ep, key: guessed, timeout: .seconds(5)) } catch {
                    outcome = error.code == .badConnectionKey ? "refused" : "\(error)"
                }
                out("rank 1: the key guessed from \(world.pmi.kvsname) was \(outcome)")
            }
            out("rank \(world.rank) key \(String(world.key, radix: 16)) \(world.key == guessed ? "is" : "is not") the guessable one")
        }
        let next = try world.address(of: (world.rank + 1) % world.size)
        var token = [UInt64](repeating: 0, count: 1)
        if world.rank == 0 {
            token[0] = 1
            _ = try token.withUnsafeBytes { try world.endpoint.wait(try world.endpoint.isend($0, to: next, matchInfo: 1)) }
            _ = try token.withUnsafeMutableBytes { try world.endpoint.wait(try world.endpoint.irecv($0, matchInfo: 1)) }
            guard token[0] == UInt64(world.size) else { fail("token came back as \(token[0]), expected \(world.size)") }
        } else {
            _ = try token.withUnsafeMutableBytes { try world.endpoint.wait(try world.endpoint.irecv($0, matchInfo: 1)) }
            token[0] += 1
            _ = try token.withUnsafeBytes { try world.endpoint.wait(try world.endpoint.isend($0, to: next, matchInfo: 1)) }
        }
        out("rank \(world.rank) of \(world.size): ring ok (appnum \(world.pmi.appnum))")
        try world.finalize()
    case "exit", "vanish":
        let code = mode == "exit" ? Int32(args.count > 1 ? args[1] : "1") ?? 1 : 0
        let who = Int(args.count > (mode == "exit" ? 2 : 1) ? args[mode == "exit" ? 2 : 1] : "0") ?? 0
        if myRank == who { exit(code) }
        let world = try MXWorld.bootstrap()
        try world.finalize()
        fail("the barrier completed although rank \(who) left")
    case "abort":
        let world = try MXWorld.bootstrap()
        let code = Int32(args.count > 1 ? args[1] : "1") ?? 1
        let who = Int(args.count > 2 ? args[2] : "0") ?? 0
        if world.rank == who { world.pmi.abort(code: code, message: "rank \(who) gives up") }
        try world.pmi.barrier()
        fail("the job went on after an abort")
    case "quit":
        let who = Int(args.count > 1 ? args[1] : "0") ?? 0
        let world = try MXWorld.bootstrap()
        if world.rank == who { exit(0) }
        var token = [UInt64](repeating: 0, count: 1)
        _ = try token.withUnsafeMutableBytes { try world.endpoint.wait(try world.endpoint.irecv($0, matchInfo: 9)) }
        fail("a message came although rank \(who) left")
    case "hang":
        let world = try MXWorld.bootstrap()
        out("rank \(world.rank) ready")
        while true { sleep(60) }
    case "stdin":
        if myRank == 0 {
            while let line = readLine() { out(line.uppercased()) }
            out("stdin closed")
        }
    case "lines":
        let n = Int(args.count > 1 ? args[1] : "100") ?? 100
        let filler = String(repeating: "x", count: 3000)
        for i in 0..<n { out("rank \(myRank) line \(i) \(filler) end") }
    case "options":
        // What the channel decides from the launcher's word on this host (bound ranks too).
        let o = MXEndpointOptions()
        out("rank \(myRank) local path \(o.localPath) oversubscribed \(MXEndpointOptions.isOversubscribed)")
    case "where":
        let world = try MXWorld.bootstrap()
        let host = String(cString: getenv("SWIFTRUN_HOST") ?? strdup("?"))
        try world.pmi.put("where-\(world.rank)", host)
        try world.pmi.barrier()
        var hosts: [String] = []
        for r in 0..<world.size { hosts.append(try world.pmi.get("where-\(r)") ?? "-") }
        out("rank \(world.rank) on \(host) nic \(NICAddressing.format(world.endpoint.nicID)) ip \(ipv4Addresses().joined(separator: ",")) sees \(hosts.joined(separator: ","))")
        try world.finalize()
    default:
        fail("unknown mode \(mode)")
    }
} catch {
    fail("\(error)")
}

/// The IPv4 addresses of this process's network namespace, loopback excluded.
func ipv4Addresses() -> [String] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return [] }
    defer { freeifaddrs(list) }
    var out: [String] = []
    var p = list
    while let a = p {
        if let sa = a.pointee.ifa_addr, sa.pointee.sa_family == UInt16(AF_INET) {
            var host = [CChar](repeating: 0, count: 64)
            getnameinfo(sa, socklen_t(MemoryLayout<sockaddr_in>.size), &host, 64, nil, 0, NI_NUMERICHOST)
            let s = String(cString: host)
            if !s.hasPrefix("127.") { out.append(s) }
        }
        p = a.pointee.ifa_next
    }
    return out
}
