@testable import MPI

/// reduce, allreduce, reduce_scatter(_block), scan, exscan: every operation with every
/// algorithm forced, on element types of several strides (including a non-commutative user
/// operation, checked exactly), in place and not, blocking and not, at several roots; every
/// reduction operation family on every element family; the errors. Each rank computes the
/// expected results itself, sequentially, in rank order.
func reductionSuite(_ h: Harness) throws {
    for comm in h.communicators {
        let small = h.counts(Int8.self).filter { $0 <= 13 }
        try checkEveryAlgorithm(h, comm, "Int32 sum", .sum, counts: small, { Int32(contribution(rank: $0, index: $1)) }, { $0 &+ $1 })
        try checkEveryAlgorithm(h, comm, "Int8 max", .max, counts: small, { Int8(contribution(rank: $0, index: $1)) }, { Swift.max($0, $1) })
        try checkEveryAlgorithm(h, comm, "non-commutative 2x2 matrix product mod \(Matrix.prime)", Matrix.product, counts: small, Matrix.of, Matrix.times)
        try checkEveryAlgorithm(h, comm, "Located<Double> minloc", .minloc(), counts: small, locatedValue, minloc)
        try checkFamilies(h, comm)
        try checkErrors(h, comm)
    }
    if h.large { try checkLarge(h, h.world) }
}

/// What every rank brings, combined sequentially in rank order: the reference.
struct Reference<T> {
    let value: (Int, Int) -> T
    let combine: (T, T) -> T

    /// Ranks `ranks` combined (lower on the left), for elements `indices`.
    func fold(_ ranks: Range<Int>, _ indices: Range<Int>) -> [T] {
        indices.map { i in ranks.dropFirst().reduce(value(ranks.lowerBound, i)) { combine($0, value($1, i)) } }
    }

    func mine(_ rank: Int, _ indices: Range<Int>) -> [T] { indices.map { value(rank, $0) } }
}

/// Counts per rank for reduce_scatter from a count n: uneven, some zero.
func scatterCounts(_ n: Int, ranks p: Int) -> [Int] { (0..<p).map { (n + $0 * 5) % (n + 1) } }

func checkEveryAlgorithm<T: BitwiseCopyable & Equatable>(_ h: Harness, _ comm: Communicator, _ what: String, _ op: Operation<T>,
                                                         counts: [Int], _ value: @escaping (Int, Int) -> T,
                                                         _ combine: @escaping (T, T) -> T) throws {
    let p = comm.size, me = comm.rank
    let ref = Reference(value: value, combine: combine)
    let roots = Set([0, p - 1, p / 2]).sorted()
    for n in counts {
        let mine = ref.mine(me, 0..<n)
        let all = ref.fold(0..<p, 0..<n)
        try h.forEachAlgorithm(.allreduce) { alg in
            h.expectEqual(try comm.allreduce(mine, op), all, "allreduce \(alg) \(what) count \(n)")
            var v = mine
            try comm.allreduce(inPlace: &v, op)
            h.expectEqual(v, all, "allreduce \(alg) in place \(what) count \(n)")
        }
        try h.forEachAlgorithm(.reduce) { alg in
            for root in roots {
                let got = try comm.reduce(mine, op, root: root)
                if me == root { h.expectEqual(got ?? [], all, "reduce \(alg) \(what) count \(n) root \(root)") }
                else { h.expect(got == nil, "reduce \(alg) \(what): a result at non-root \(me)") }
                var v = mine
                try comm.reduce(inPlace: &v, op, root: root)
                h.expectEqual(v, me == root ? all : mine, "reduce \(alg) in place \(what) count \(n) root \(root)")
            }
            if n == 1 {
                let one = try comm.reduce(mine[0], op, root: p - 1)
                h.expect(me == p - 1 ? one == all[0] : one == nil, "reduce \(alg) of one value \(what): \(String(describing: one))")
            }
        }
        try h.forEachAlgorithm(.reduceScatter) { alg in
            let blocks = ref.mine(me, 0..<(p * n))
            let block = ref.fold(0..<p, (me * n)..<((me + 1) * n))
            h.expectEqual(try comm.reduceScatterBlock(blocks, op), block, "reduce_scatter_block \(alg) \(what) count \(n)")
            var v = blocks
            try comm.reduceScatterBlock(inPlace: &v, op)
            h.expectEqual(v, block, "reduce_scatter_block \(alg) in place \(what) count \(n)")
            let counts = scatterCounts(n, ranks: p)
            let from = counts[..<me].reduce(0, +)
            let values = ref.mine(me, 0..<counts.reduce(0, +))
            let part = ref.fold(0..<p, from..<(from + counts[me]))
            h.expectEqual(try comm.reduceScatter(values, counts: counts, op), part, "reduce_scatter \(alg) \(what) counts \(counts)")
            var w = values
            try comm.reduceScatter(inPlace: &w, counts: counts, op)
            h.expectEqual(w, part, "reduce_scatter \(alg) in place \(what) counts \(counts)")
        }
        let prefix = ref.fold(0..<(me + 1), 0..<n)
        let before = me == 0 ? nil : ref.fold(0..<me, 0..<n)
        try h.forEachAlgorithm(.scan) { alg in
            h.expectEqual(try comm.scan(mine, op), prefix, "scan \(alg) \(what) count \(n)")
            var v = mine
            try comm.scan(inPlace: &v, op)
            h.expectEqual(v, prefix, "scan \(alg) in place \(what) count \(n)")
            if n == 1 {
                let one = try comm.scan(mine[0], op)
                h.expect(one == prefix[0], "scan \(alg) of one value \(what)")
            }
        }
        try h.forEachAlgorithm(.exscan) { alg in
            let got = try comm.exscan(mine, op)
            h.expect(got == before, "exscan \(alg) \(what) count \(n): \(String(describing: got)), expected \(String(describing: before))")
            var v = mine
            try comm.exscan(inPlace: &v, op)
            h.expectEqual(v, before ?? mine, "exscan \(alg) in place \(what) count \(n)")
            if n == 1 {
                let one = try comm.exscan(mine[0], op)
                h.expect(one == before?[0], "exscan \(alg) of one value \(what)")
            }
        }
        // Every non-blocking form in flight together, finished in reverse order.
        let counts = scatterCounts(n, ranks: p)
        let from = counts[..<me].reduce(0, +)
        let root = p / 2
        let a = try comm.ireduce(mine, op, root: root)
        let b = try comm.iallreduce(mine, op)
        let c = try comm.ireduceScatterBlock(ref.mine(me, 0..<(p * n)), op)
        let d = try comm.ireduceScatter(ref.mine(me, 0..<counts.reduce(0, +)), counts: counts, op)
        let e = try comm.iscan(mine, op)
        let f = try comm.iexscan(mine, op)
        let fGot = try f.wait()
        h.expect(fGot == before, "iexscan \(what) count \(n)")
        h.expectEqual(try e.wait(), prefix, "iscan \(what) count \(n)")
        h.expectEqual(try d.wait(), ref.fold(0..<p, from..<(from + counts[me])), "ireduce_scatter \(what) counts \(counts)")
        h.expectEqual(try c.wait(), ref.fold(0..<p, (me * n)..<((me + 1) * n)), "ireduce_scatter_block \(what) count \(n)")
        h.expectEqual(try b.wait(), all, "iallreduce \(what) count \(n)")
        let r = try a.wait()
        h.expect(me == root ? r == all : r == nil, "ireduce \(what) count \(n) root \(root)")
    }
}

/// A 2x2 matrix of integers mod a prime: its product is associative, not commutative.
struct Matrix: BitwiseCopyable, Equatable {
    static let prime: Int64 = 1_000_003
    var a, b, c, d: Int64

    static func of(_ rank: Int, _ index: Int) -> Matrix {
        let x = Int64(contribution(rank: rank, index: index) + 20)
        return Matrix(a: x + 1, b: Int64(rank + 2), c: Int64(index % 7 + 1), d: x * 3 % 11 + 1)
    }

    static func times(_ l: Matrix, _ r: Matrix) -> Matrix {
        Matrix(a: (l.a * r.a + l.b * r.c) % prime, b: (l.a * r.b + l.b * r.d) % prime,
               c: (l.c * r.a + l.d * r.c) % prime, d: (l.c * r.b + l.d * r.d) % prime)
    }

    static let product = Operation<Matrix>(name: "matrix product", commutative: false, times)
}

func locatedValue(_ rank: Int, _ index: Int) -> Located<Double> {
    Located(Double(contribution(rank: rank, index: index) % 5), at: rank)
}

/// The smallest value, and the lowest rank holding it.
func minloc(_ x: Located<Double>, _ y: Located<Double>) -> Located<Double> {
    if y.value != x.value { return y.value < x.value ? y : x }
    return y.location < x.location ? y : x
}

/// One operation on one element type, through the chosen algorithms: allreduce, reduce to
/// the middle rank and scan, 13 elements.
func checkFamily<T: BitwiseCopyable & Equatable>(_ h: Harness, _ comm: Communicator, _ what: String, _ op: Operation<T>,
                                                 _ value: @escaping (Int, Int) -> T, _ combine: @escaping (T, T) -> T) throws {
    let p = comm.size, me = comm.rank, n = 13
    let ref = Reference(value: value, combine: combine)
    let mine = ref.mine(me, 0..<n)
    let all = ref.fold(0..<p, 0..<n)
    h.expectEqual(try comm.allreduce(mine, op), all, "allreduce \(what)")
    let got = try comm.reduce(mine, op, root: p / 2)
    if me == p / 2 { h.expectEqual(got ?? [], all, "reduce \(what)") }
    h.expectEqual(try comm.scan(mine, op), ref.fold(0..<(me + 1), 0..<n), "scan \(what)")
}

func checkIntegers<T: FixedWidthInteger & BitwiseCopyable>(_ h: Harness, _ comm: Communicator, _: T.Type) throws {
    let name = "\(T.self)"
    let v: (Int, Int) -> T = { T(truncatingIfNeeded: contribution(rank: $0, index: $1)) }
    // Some zeros, for the logical operations.
    let z: (Int, Int) -> T = { ($0 + $1) % 4 == 0 ? 0 : T(truncatingIfNeeded: contribution(rank: $0, index: $1)) }
    func truth(_ x: T) -> Bool { x != 0 }
    try checkFamily(h, comm, "sum of \(name)", .sum, v, { $0 &+ $1 })
    try checkFamily(h, comm, "product of \(name)", .product, v, { $0 &* $1 })
    try checkFamily(h, comm, "min of \(name)", .min, v, { Swift.min($0, $1) })
    try checkFamily(h, comm, "max of \(name)", .max, v, { Swift.max($0, $1) })
    try checkFamily(h, comm, "bitwise and of \(name)", .bitwiseAnd, v, { $0 & $1 })
    try checkFamily(h, comm, "bitwise or of \(name)", .bitwiseOr, v, { $0 | $1 })
    try checkFamily(h, comm, "bitwise xor of \(name)", .bitwiseXor, v, { $0 ^ $1 })
    try checkFamily(h, comm, "logical and of \(name)", .logicalAnd, z, { truth($0) && truth($1) ? 1 : 0 })
    try checkFamily(h, comm, "logical or of \(name)", .logicalOr, z, { truth($0) || truth($1) ? 1 : 0 })
    try checkFamily(h, comm, "logical xor of \(name)", .logicalXor, z, { truth($0) != truth($1) ? 1 : 0 })
}

func checkFloats<T: BinaryFloatingPoint & BitwiseCopyable>(_ h: Harness, _ comm: Communicator, _: T.Type) throws {
    let name = "\(T.self)"
    let v: (Int, Int) -> T = { T(contribution(rank: $0, index: $1)) }
    // Powers of two (and their negatives): every product exact, in any order.
    let pow: (Int, Int) -> T = { r, i in T((r + i) % 3 == 0 ? -1 : 1) * T(1 << ((r * 3 + i) % 3)) / 2 }
    try checkFamily(h, comm, "sum of \(name)", .sum, v, { $0 + $1 })
    try checkFamily(h, comm, "product of \(name)", .product, pow, { $0 * $1 })
    try checkFamily(h, comm, "min of \(name)", .min, v, { Swift.min($0, $1) })
    try checkFamily(h, comm, "max of \(name)", .max, v, { Swift.max($0, $1) })
}

/// A user struct with a user (commutative) operation.
struct Moments: BitwiseCopyable, Equatable {
    var count: Int32
    var sum: Double
    var largest: Double

    static let merge = Operation<Moments>(name: "merge", commutative: true) { a, b in
        Moments(count: a.count + b.count, sum: a.sum + b.sum, largest: Swift.max(a.largest, b.largest))
    }
}

func checkFamilies(_ h: Harness, _ comm: Communicator) throws {
    try checkIntegers(h, comm, Int8.self)
    try checkIntegers(h, comm, Int16.self)
    try checkIntegers(h, comm, Int32.self)
    try checkIntegers(h, comm, Int64.self)
    try checkIntegers(h, comm, Int.self)
    try checkIntegers(h, comm, UInt8.self)
    try checkIntegers(h, comm, UInt16.self)
    try checkIntegers(h, comm, UInt32.self)
    try checkIntegers(h, comm, UInt64.self)
    try checkIntegers(h, comm, UInt.self)
    try checkFloats(h, comm, Float.self)
    try checkFloats(h, comm, Double.self)
    let b: (Int, Int) -> Bool = { ($0 + $1) % 3 != 0 }
    try checkFamily(h, comm, "logical and of Bool", .logicalAnd, b, { $0 && $1 })
    try checkFamily(h, comm, "logical or of Bool", .logicalOr, b, { $0 || $1 })
    try checkFamily(h, comm, "logical xor of Bool", .logicalXor, b, { $0 != $1 })
    try checkFamily(h, comm, "minloc of Located<Double>", .minloc(), locatedValue, minloc)
    try checkFamily(h, comm, "maxloc of Located<Double>", .maxloc(), locatedValue) { x, y in
        if y.value != x.value { return y.value > x.value ? y : x }
        return y.location < x.location ? y : x
    }
    try checkFamily(h, comm, "sum of SIMD4<Float>", .sum, { r, i in
        let c = Float(contribution(rank: r, index: i))
        return SIMD4(c, c + 1, -c, 2 * c)
    }, { $0 + $1 })
    try checkFamily(h, comm, "a user operation on a user struct", Moments.merge, { r, i in
        let c = Double(contribution(rank: r, index: i))
        return Moments(count: Int32(r + 1), sum: c, largest: c * 2)
    }) { a, b in Moments(count: a.count + b.count, sum: a.sum + b.sum, largest: Swift.max(a.largest, b.largest)) }
}

/// Errors: what every member passes alike fails on every member; a mismatch between members
/// fails, never hangs: on every member that depends on the mismatched data.
func checkErrors(_ h: Harness, _ comm: Communicator) throws {
    let p = comm.size, me = comm.rank, n = 13
    let mine = [Int32](repeating: 1, count: n)
    h.expectError(.root, "reduce to a root outside the communicator") { _ = try comm.reduce(mine, .sum, root: p) }
    h.expectError(.root, "reduce to a negative root") { _ = try comm.reduce(mine, .sum, root: -1) }
    h.expectError(.root, "ireduce to a root outside the communicator") { _ = try comm.ireduce(mine, .sum, root: p) }
    h.expectError(.count, "reduce_scatter with one count too many") {
        _ = try comm.reduceScatter(mine, counts: [Int](repeating: 1, count: p + 1), .sum)
    }
    h.expectError(.count, "reduce_scatter with a negative count") {
        _ = try comm.reduceScatter(mine, counts: [-1] + [Int](repeating: 1, count: p - 1), .sum)
    }
    h.expectError(.count, "ireduce_scatter with too few counts") { _ = try comm.ireduceScatter(mine, counts: [], .sum) }
    h.expectError(.buffer, "reduce_scatter with counts beyond the input") {
        _ = try comm.reduceScatter(mine, counts: [Int](repeating: n + 1, count: p), .sum)
    }
    if p > 1 {
        h.expectError(.count, "reduce_scatter_block of an input that is not p blocks") {
            _ = try comm.reduceScatterBlock([Int32](repeating: 1, count: p + 1), .sum)
        }
    }
    // An output too small on one rank: it fails there and the others hear of it.
    var small = [Int32](repeating: 0, count: n - 1)
    let last = p - 1
    try h.forEachAlgorithm(.allreduce) { alg in
        h.expectError(.buffer, "allreduce \(alg) with rank \(last)'s output too small") {
            try mine.withUnsafeBufferPointer { i in
                try small.withUnsafeMutableBufferPointer { o in
                    var big = [Int32](repeating: 0, count: n)
                    try big.withUnsafeMutableBufferPointer { b in try comm.allreduce(i, into: me == last ? o : b, .sum) }
                }
            }
        }
    }
    try h.forEachAlgorithm(.reduce) { alg in
        // Only the root's output counts; the others may finish before they hear.
        var failed = false
        do {
            try mine.withUnsafeBufferPointer { i in try small.withUnsafeMutableBufferPointer { o in try comm.reduce(i, into: o, .sum, root: last) } }
        } catch let e as MPIError {
            h.expect(e.errorClass == .buffer, "reduce \(alg) to a root with its output too small: \(e)")
            failed = true
        }
        h.expect(me != last || failed, "reduce \(alg): no error at the root with its output too small")
        try comm.barrier()
    }
    guard p > 1 else { return }
    // Counts that differ between members: rank p - 1 (rank 0 for the scans, which the
    // others' results depend on) passes one element more.
    func mismatch(_ what: String, _ body: () throws -> Void) {
        h.checks += 1
        do {
            try body()
            h.fail("\(what): no error")
        } catch let e as MPIError {
            if e.errorClass != .truncate && e.errorClass != .count { h.fail("\(what): \(e), expected truncate or count") }
        } catch { h.fail("\(what): \(error)") }
    }
    let odd = me == last ? n + 1 : n
    try h.forEachAlgorithm(.allreduce) { alg in
        mismatch("allreduce \(alg) with counts \(n) and \(n + 1)") { _ = try comm.allreduce([Int32](repeating: 1, count: odd), .sum) }
    }
    try h.forEachAlgorithm(.reduceScatter) { alg in
        mismatch("reduce_scatter_block \(alg) with blocks of \(n) and \(n + 1)") {
            _ = try comm.reduceScatterBlock([Int32](repeating: 1, count: odd * p), .sum)
        }
        let counts = [Int](repeating: odd, count: p)
        mismatch("reduce_scatter \(alg) with counts \(n) and \(n + 1)") {
            _ = try comm.reduceScatter([Int32](repeating: 1, count: odd * p), counts: counts, .sum)
        }
        mismatch("reduce_scatter \(alg) non-commutative with counts \(n) and \(n + 1)") {
            _ = try comm.reduceScatter([Matrix](repeating: Matrix.of(me, 0), count: odd * p), counts: counts, Matrix.product)
        }
    }
    try h.forEachAlgorithm(.reduce) { alg in
        // The root depends on everyone; the others may finish before they hear.
        var failed = false
        do { _ = try comm.reduce([Int32](repeating: 1, count: odd), .sum, root: 0) } catch { failed = true }
        h.expect(me != 0 || failed, "reduce \(alg) with counts \(n) and \(n + 1): no error at the root")
        try comm.barrier()
    }
    let first = me == 0 ? n + 1 : n
    mismatch("scan with counts \(n + 1) at rank 0 and \(n)") { _ = try comm.scan([Int32](repeating: 1, count: first), .sum) }
    mismatch("exscan with counts \(n + 1) at rank 0 and \(n)") { _ = try comm.exscan([Int32](repeating: 1, count: first), .sum) }
    // The communicator works on after the failures.
    let after = try comm.allreduce(Int32(1), .sum)
    h.expect(after == Int32(p), "allreduce after the failed calls")
}

/// 8 MiB of Floats summed, with every algorithm of allreduce, reduce and reduce_scatter_block.
func checkLarge(_ h: Harness, _ comm: Communicator) throws {
    let p = comm.size, me = comm.rank
    let n = 8 << 20 / MemoryLayout<Float>.stride
    let mine = (0..<n).map { Float(contribution(rank: me, index: $0)) }
    // The sum over ranks of contribution(r, i) depends on i only through i mod 61.
    let period = (0..<61).map { i in Float((0..<p).reduce(0) { $0 + contribution(rank: $1, index: i) }) }
    let all = (0..<n).map { period[$0 % 61] }
    try h.forEachAlgorithm(.allreduce) { alg in
        h.expectEqual(try comm.allreduce(mine, .sum), all, "allreduce \(alg) of 8 MiB of Float")
    }
    try h.forEachAlgorithm(.reduce) { alg in
        let got = try comm.reduce(mine, .sum, root: p - 1)
        if me == p - 1 { h.expectEqual(got ?? [], all, "reduce \(alg) of 8 MiB of Float to \(p - 1)") }
    }
    let block = n / p
    try h.forEachAlgorithm(.reduceScatter) { alg in
        h.expectEqual(try comm.reduceScatterBlock(Array(mine[0..<(block * p)]), .sum), Array(all[(me * block)..<((me + 1) * block)]),
                      "reduce_scatter_block \(alg) of 8 MiB of Float")
    }
}
