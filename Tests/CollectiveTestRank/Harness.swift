#if canImport(Glibc)
import Glibc
#endif
@_spi(Testing) import MPI

/// What every suite shares: the communicators to run on, the counts to try, forcing an
/// algorithm, and checking.
final class Harness {
    let world: Communicator
    let large: Bool
    var suite = ""
    var checks = 0

    /// Every suite, by name, in the order they run (each file adds its own).
    nonisolated(unsafe) static var suites: [(String, (Harness) throws -> Void)] = [
        ("synchronization", synchronizationSuite),
        ("reductions", reductionSuite),
        ("gathering", gatheringSuite),
        ("nonblocking", nonBlockingSuite),
        ("sharedmemory", sharedMemorySuite),
        ("unencodable", unencodableSuite),
    ]
    /// Suites that run only when named (they need something set up around the job).
    nonisolated(unsafe) static var namedOnly: [(String, (Harness) throws -> Void)] = [
        ("allocations", allocationSuite),
        ("killed", killedSuite),
    ]

    init(world: Communicator, large: Bool) {
        self.world = world
        self.large = large
    }

    /// Element counts every operation is tried with: 0, 1, a prime, and with `--large`
    /// 8 MiB worth of `T`.
    func counts<T>(_: T.Type) -> [Int] {
        [0, 1, 13] + (large ? [8 << 20 / MemoryLayout<T>.stride] : [])
    }

    /// The communicators to run each check on: the world, and a split into two interleaved
    /// halves ordered backwards (ranks that differ from their world ranks).
    lazy var communicators: [Communicator] = {
        var out = [world]
        if world.size >= 3, let c = try? world.split(color: world.rank % 2, key: -world.rank) { out.append(c) }
        return out
    }()

    /// Runs `body` once per algorithm of `op`, each forced in turn (as MYRIXEN_COLL_<OP> would).
    func forEachAlgorithm(_ op: CollectiveOperation, _ body: (CollectiveAlgorithm) throws -> Void) rethrows {
        let saved = Selection.forced
        defer { Selection.forced = saved }
        for alg in Selection.algorithms[op] ?? [] {
            Selection.forced[op] = alg
            if alg == .hostAware {
                // Two levels on this one machine: the layout as if the world's ranks sat on
                // hosts round robin, or three to a host (the algorithms rely on nothing else).
                try asIfOnHosts((0..<world.size).map { $0 % 2 }) { try body(alg) }
                try asIfOnHosts((0..<world.size).map { $0 / 3 }) { try body(alg) }
            } else {
                try body(alg)
            }
        }
    }

    /// Runs `body` as if world rank r were on host `hostOf[r]`.
    func asIfOnHosts(_ hostOf: [Int], _ body: () throws -> Void) rethrows {
        let engine = world.engine
        let saved = (engine.layoutState, engine.hostOfWorldRank)
        func relayout() { for c in communicators { c.hostLayoutCache = nil } }
        engine.layoutState = .known
        engine.hostOfWorldRank = hostOf
        relayout()
        defer {
            (engine.layoutState, engine.hostOfWorldRank) = saved
            relayout()
        }
        try body()
    }

    func expect(_ condition: @autoclosure () -> Bool, _ what: @autoclosure () -> String) {
        checks += 1
        if !condition() { fail(what()) }
    }

    /// `got == want` element by element; the failure names the first difference.
    func expectEqual<T: Equatable>(_ got: [T], _ want: [T], _ what: @autoclosure () -> String) {
        checks += 1
        guard got != want else { return }
        if got.count != want.count { fail("\(what()): \(got.count) elements, expected \(want.count)") }
        let i = got.indices.first { got[$0] != want[$0] }!
        fail("\(what()): element \(i) is \(got[i]), expected \(want[i])")
    }

    func expectError(_ cls: MPIError.ErrorClass, _ what: String, _ body: () throws -> Void) {
        checks += 1
        do {
            try body()
            fail("\(what): no error, expected \(cls.rawValue)")
        } catch let e as MPIError {
            if e.errorClass != cls { fail("\(what): \(e), expected \(cls.rawValue)") }
        } catch { fail("\(what): \(error)") }
    }

    func fail(_ what: String) -> Never {
        let line = "FAILED: rank \(world.rank) of \(world.size), suite \(suite): \(what)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        exit(3)
    }

    func report() {
        let line = "rank \(world.rank): ok \(checks) checks\n"
        _ = line.withCString { write(1, $0, strlen($0)) }
    }
}

/// What rank `r` contributes as element `i` of a `T` buffer: distinct per rank and element,
/// small enough that sums of nine ranks stay exact in Float.
func contribution(rank r: Int, index i: Int) -> Int { (r * 7 + i * 3) % 61 - 20 }
