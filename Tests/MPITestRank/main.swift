// A rank of the MPI tests: point-to-point semantics, checked by every rank. Prints
// "rank R: ok <what>" for each check that passed; exits 3 on the first that did not.
#if canImport(Glibc)
import Glibc
#endif
import MPI
import MyriXen

struct Order: Codable, Equatable {
    var customer: String
    var items: [String: Int]
    var note: String?
}

func asyncChecks(_ world: Communicator) async throws {
    // An async receive suspends the task instead of blocking its thread.
    let me = world.rank, n = world.size
    if n >= 2 && me < 2 {
        if me == 0 {
            let (v, st) = try await world.receive(Int.self, from: .rank(1), tag: 21)
            guard v == [99], st.source == 1 else { fail("async receive \(v)") }
            let r = try world.ireceive(Int.self, count: 2, from: .rank(1), tag: 22)
            guard try await r.value() == [1, 2] else { fail("async request value") }
        } else {
            try world.send(99, to: 0, tag: 21)
            try world.send([1, 2], to: 0, tag: 22)
        }
    }
}

struct Particle: BitwiseCopyable, Equatable {
    var position: SIMD3<Double>
    var id: Int32
}

func ok(_ rank: Int, _ what: String) {
    let line = "rank \(rank): ok \(what)\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

func fail(_ what: String) -> Never {
    let line = "FAILED: \(what)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(3)
}

func expectError(_ cls: MPIError.ErrorClass, _ what: String, _ body: () throws -> Void) {
    do {
        try body()
        fail("\(what): no error")
    } catch let e as MPIError {
        guard e.errorClass == cls else { fail("\(what): \(e), expected \(cls.rawValue)") }
    } catch { fail("\(what): \(error)") }
}

let mode = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "all"
let mpi = try MPI.initialize()
let world = mpi.world
let me = world.rank, n = world.size
if mode == "abort" {
    // "long": a message far over what one PMI line takes, with a newline in it.
    let long = CommandLine.arguments.count > 2 && CommandLine.arguments[2] == "long"
    if me == n - 1 { mpi.abort(code: 5, message: "rank \(me) aborts" + (long ? "\n" + String(repeating: "x", count: 10_000) : "")) }
    try world.barrier()
    fail("the job went on after MPI abort")
}
if mode == "drain" {
    // Every rank sends to every other at sizes up to a rendezvous, then finalizes at once:
    // frames the wire lost must still be resent while the senders sit in finalize.
    let sizes = [1, 250, 3_000, 4_000, 12_500]
    var sends: [Request<Void>] = []
    for peer in 0..<n where peer != me {
        for (k, count) in sizes.enumerated() {
            sends.append(try world.isend([Int](repeating: me * 1_000 + peer * 10 + k, count: count), to: peer, tag: k))
        }
    }
    for peer in 0..<n where peer != me {
        for (k, count) in sizes.enumerated() {
            let (values, _) = try world.receive(Int.self, from: .rank(peer), tag: .value(k))
            guard values.count == count, values.allSatisfy({ $0 == peer * 1_000 + me * 10 + k }) else {
                fail("rank \(me): message \(k) from rank \(peer) is wrong")
            }
        }
    }
    _ = try Request.waitAll(sends)
    ok(me, "drained")
    mpi.finalize()
    exit(0)
}
if mode == "exchange" {
    // Pairs (0,1), (2,3), ... exchange for `seconds`, checking every value; rank 0 creates
    // `marker` once the exchange runs (the test then cuts a link). With "throwing", a failure
    // is caught and reported, and later operations toward the lost rank are checked too.
    let seconds = Double(CommandLine.arguments[2])!, marker = CommandLine.arguments[3]
    let throwing = CommandLine.arguments.count > 4 && CommandLine.arguments[4] == "throwing"
    if throwing { world.errorHandler = .throwing }
    let partner = me ^ 1
    guard partner < n else { fail("exchange needs an even number of ranks") }
    let start = MPIEnvironment.wtime()
    var rounds = 0
    do {
        // The even rank keeps the time and says, in each message, whether it is the last.
        var last = false
        while !last {
            if me & 1 == 0 {
                last = MPIEnvironment.wtime() - start >= seconds
                try world.send([rounds, me, last ? 1 : 0], to: partner, tag: 1)
                let (back, _) = try world.receive(Int.self, from: .rank(partner), tag: 2)
                guard back == [rounds * 2 + partner, partner] else { fail("round \(rounds): \(back)") }
            } else {
                let (got, _) = try world.receive(Int.self, from: .rank(partner), tag: 1)
                guard got.count == 3, got[0] == rounds, got[1] == partner else { fail("round \(rounds): \(got)") }
                last = got[2] == 1
                try world.send([rounds * 2 + me, me], to: partner, tag: 2)
            }
            rounds += 1
            if rounds == 200 && me == 0 { close(open(marker, O_CREAT | O_WRONLY, 0o600)) }
        }
    } catch {
        print("rank \(me): caught \(error)")
        do { try world.send(1, to: partner, tag: 3); fail("a send to the lost rank succeeded") } catch {
            print("rank \(me): later send: \(error)")
        }
        do { _ = try world.ireceive(Int.self, count: 1, from: .rank(partner), tag: 3).wait(); fail("a receive from the lost rank succeeded") } catch {
            print("rank \(me): later receive: \(error)")
        }
        // Nothing else is lost: a look for a message from anyone is not an error.
        do { if try world.iprobe(from: .any, tag: 3) == nil { ok(me, "any-source probe after the loss") } } catch {
            fail("an any-source probe after the loss: \(error)")
        }
        mpi.finalize()
        exit(0)
    }
    ok(me, "exchanged \(rounds) rounds")
    mpi.finalize()
    exit(0)
}
do {
    expectError(.other, "initializing twice") { _ = try MPI.initialize() }
    ok(me, "initialize once")
    // Every rank sends to rank 0 with its rank as tag; rank 0 takes them from any source.
    if me != 0 {
        try world.send([Double](repeating: Double(me), count: me), to: 0, tag: me)
    } else {
        var seen = Set<Int>()
        for _ in 1..<n {
            let (values, st) = try world.receive(Double.self, from: .any, tag: .any)
            guard st.tag == st.source, values == [Double](repeating: Double(st.source), count: st.source) else {
                fail("any-source message from \(st.source) tag \(st.tag): \(values)")
            }
            seen.insert(st.source)
        }
        guard seen == Set(1..<n) else { fail("sources \(seen)") }
    }
    ok(me, "any source, any tag, sizes known only by probe")

    // User structs with SIMD members, both ways between pairs.
    let partner = me ^ 1
    if partner < n {
        let mine = (0..<100).map { Particle(position: SIMD3(Double(me), Double($0), -1), id: Int32($0)) }
        if me % 2 == 0 {
            try world.send(mine, to: partner, tag: 5)
            var theirs = [Particle](repeating: Particle(position: .zero, id: 0), count: 100)
            try world.receive(into: &theirs, from: .rank(partner), tag: 5)
            guard theirs == (0..<100).map({ Particle(position: SIMD3(Double(partner), Double($0), -1), id: Int32($0)) }) else { fail("particles") }
        } else {
            var theirs = [Particle](repeating: Particle(position: .zero, id: 0), count: 100)
            try world.receive(into: &theirs, from: .rank(partner), tag: 5)
            try world.send(mine, to: partner, tag: 5)
            guard theirs.allSatisfy({ $0.position.x == Double(partner) }) else { fail("particles back") }
        }
    }
    ok(me, "BitwiseCopyable structs")

    // Truncation is an error of class truncate; the buffer is not overrun.
    let selfComm = mpi.selfComm
    try selfComm.send([1, 2, 3, 4], to: 0, tag: 1)
    var two = [0, 0]
    expectError(.truncate, "short buffer") { try selfComm.receive(into: &two, from: 0, tag: 1) }
    ok(me, "truncation")

    // Invalid ranks and tags are errors, not crashes.
    expectError(.rank, "send to rank n") { try world.send(1, to: n, tag: 0) }
    expectError(.rank, "receive from rank -1") { _ = try world.receive(Int.self, from: .rank(-1), tag: 0) }
    expectError(.tag, "negative tag") { try world.send(1, to: 0, tag: -5) }
    ok(me, "invalid rank and tag")

    // Communicators are isolated: a message on self is not seen on world.
    try selfComm.send(42, to: 0, tag: 9)
    guard try world.iprobe(from: .rank(me), tag: 9) == nil else { fail("world saw a message sent on self") }
    let (v, _) = try selfComm.receive(Int.self, from: 0, tag: 9)
    guard v == [42] else { fail("self message \(v)") }
    ok(me, "communicator isolation")

    // Non-overtaking: 10,000 messages of mixed sizes (zero-length ones among them) from 1 to 0
    // arrive in order.
    if n >= 2 && me < 2 {
        if me == 1 {
            for i in 0..<10_000 { try world.send([Int](repeating: i, count: i % 97 == 0 ? 3000 : (i % 5 == 0 ? 0 : 1)), to: 0, tag: 3) }
        } else {
            for i in 0..<10_000 {
                if i % 5 == 0 && i % 97 != 0 {
                    let (vals, st) = try world.receive(Int.self, from: 1, tag: 3)
                    guard vals.isEmpty, st.byteCount == 0 else { fail("zero-length message \(i)") }
                    continue
                }
                let (vals, _) = try world.receive(Int.self, from: 1, tag: 3)
                guard vals.first == i else { fail("message \(i) arrived as \(vals.first ?? -1)") }
            }
        }
    }
    ok(me, "order")

    // Non-blocking: 4 MiB each way between pairs, both sides isend first; never deadlocks.
    if partner < n {
        let big = [UInt32](repeating: UInt32(me), count: 1 << 20)
        let incoming = try world.ireceive(UInt32.self, count: 1 << 20, from: .rank(partner), tag: 11)
        let outgoing = try world.isend(big, to: partner, tag: 11)
        let data = try incoming.wait()
        _ = try outgoing.wait()
        guard data.count == 1 << 20, data.allSatisfy({ $0 == UInt32(partner) }), incoming.status?.source == partner else { fail("4 MiB exchange") }
        expectError(.request, "waiting twice") { _ = try incoming.wait() }
    }
    ok(me, "non-blocking exchange")

    // A synchronous send completes only once matched.
    if n >= 2 && me < 2 {
        if me == 1 {
            let r = try world.issend([7], to: 0, tag: 12)
            let until = MPIEnvironment.wtime() + 0.1
            while MPIEnvironment.wtime() < until { if try r.test() != nil { fail("issend completed before the receive") } }
            try world.barrier()
            _ = try r.wait()
        } else {
            try world.barrier()
            let (v, _) = try world.receive(Int.self, from: 1, tag: 12)
            guard v == [7] else { fail("issend payload \(v)") }
        }
    } else {
        try world.barrier()
    }
    ok(me, "issend")

    // Cancel, waitAny, sendReceive, and dropping an unfinished request.
    let never = try world.ireceive(Int.self, count: 1, from: .any, tag: 13)
    guard try never.cancel() else { fail("cancel of an unmatched receive") }
    guard try never.wait() == [], never.status?.isCancelled == true else { fail("cancelled status") }
    do { _ = try world.ireceive(Int.self, count: 8, from: .any, tag: 14) } // dropped: cancelled by its deinit
    let shifted = try world.sendReceive([me], to: (me + 1) % n, sendTag: 15, receiveCount: 1, from: .rank((me + n - 1) % n), receiveTag: 15)
    guard shifted.0 == [(me + n - 1) % n] else { fail("sendReceive \(shifted.0)") }
    let a = try selfComm.ireceive(Int.self, count: 1, from: 0, tag: 16)
    let b = try selfComm.ireceive(Int.self, count: 1, from: 0, tag: 17)
    try selfComm.send(5, to: 0, tag: 17)
    let (which, value) = try Request.waitAny([a, b])
    guard which == 1, value == [5] else { fail("waitAny \(which) \(value)") }
    _ = try a.cancel()
    ok(me, "cancel, waitAny, sendReceive")

    // Objects (Codable): each rank sends an order to rank 0.
    if me != 0 {
        try world.send(Order(customer: "rank \(me)", items: ["bolts": me, "nuts": 2 * me], note: me % 2 == 0 ? nil : "odd"), to: 0, tag: 20)
    } else {
        for _ in 1..<n {
            let order = try world.receive(Order.self, from: .any, tag: 20)
            guard let r = Int(order.customer.dropFirst(5)), order.items == ["bolts": r, "nuts": 2 * r],
                  order.note == (r % 2 == 0 ? nil : "odd") else { fail("order \(order)") }
        }
    }
    ok(me, "Codable objects")

    // Every datatype family, both ways around a ring.
    let right = (me + 1) % n, left = (me + n - 1) % n
    func roundTrip<T: BitwiseCopyable & Equatable>(_ values: [T], tag: Int) throws {
        let r = try world.ireceive(T.self, count: values.count, from: .rank(left), tag: .value(tag))
        try world.send(values, to: right, tag: tag)
        guard try r.wait() == values else { fail("\(T.self) values") }
    }
    try roundTrip([Int8.min, 0, Int8.max], tag: 30)
    try roundTrip([UInt16.max, 1], tag: 31)
    try roundTrip([Int32.min, -1, 7], tag: 32)
    try roundTrip([UInt64.max, 0], tag: 33)
    try roundTrip([Float.pi, -0.0, .infinity], tag: 34)
    try roundTrip([Double.leastNonzeroMagnitude, 1e300], tag: 35)
    try roundTrip([SIMD4<Float>(1, 2, 3, 4)], tag: 36)
    try roundTrip([true, false], tag: 37)
    ok(me, "datatype families")


    // Communicators: split by parity, dup, create from a group, split by host, free.
    let parity = try world.split(color: me % 2, key: -me)!      // reversed order inside each half
    let half = (n + (me % 2 == 0 ? 1 : 0)) / 2
    guard parity.size == half, parity.rank == (half - 1 - me / 2) else { fail("split: rank \(parity.rank) of \(parity.size)") }
    let total = try { () throws -> Int in
        // Sum of world ranks within the half, by a token around the half.
        let next = (parity.rank + 1) % parity.size, prev = (parity.rank + parity.size - 1) % parity.size
        if parity.size == 1 { return me }
        if parity.rank == 0 {
            try parity.send(me, to: next, tag: 1)
            return try parity.receive(Int.self, from: .rank(prev), tag: 1).0[0]
        }
        let (v, _) = try parity.receive(Int.self, from: .rank(prev), tag: 1)
        try parity.send(v[0] + me, to: next, tag: 1)
        return -1
    }()
    if parity.rank == 0 {
        let expected = stride(from: me % 2, to: n, by: 2).reduce(0, +)
        guard total == expected else { fail("split ring sum \(total), expected \(expected)") }
    }
    try parity.barrier()
    let twin = try world.dup()
    guard world.compare(twin) == .congruent, twin.size == n, twin.rank == me else { fail("dup") }
    try twin.send(me, to: me, tag: 4)
    guard try world.iprobe(from: .rank(me), tag: 4) == nil else { fail("world saw a dup's message") }
    _ = try twin.receive(Int.self, from: .rank(me), tag: 4)
    let evens = try world.group.including(Array(stride(from: 0, to: n, by: 2)))
    let created = try world.create(from: evens)
    guard (created != nil) == (me % 2 == 0), created?.size ?? half == (n + 1) / 2 || me % 2 == 1 else { fail("create from group") }
    // The ranks of this rank's host, in world order: swiftrun says how many and which one.
    let host = try world.splitByHost()
    let localSize = getenv("SWIFTRUN_LOCAL_SIZE").flatMap { Int(String(cString: $0)) } ?? n
    let localRank = getenv("SWIFTRUN_LOCAL_RANK").flatMap { Int(String(cString: $0)) } ?? me
    guard host.size == localSize, host.rank == localRank else {
        fail("split by host: rank \(host.rank) of \(host.size), swiftrun says \(localRank) of \(localSize) on this host")
    }
    try twin.free()
    expectError(.comm, "send on a freed communicator") { try twin.send(1, to: 0, tag: 0) }
    expectError(.comm, "freeing the world") { try world.free() }
    ok(me, "communicators")
    try world.barrier()
} catch {
    fail("\(error)")
}
do {
    try await asyncChecks(world)
    ok(me, "async receive")
    try world.barrier()
} catch {
    fail("\(error)")
}
mpi.finalize()
