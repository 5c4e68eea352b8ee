@_spi(Testing) import MPI

/// gather(v), scatter(v), allgather(v), alltoall(v): every algorithm forced in turn, counts
/// from the harness, five element types, three roots, in place, the v forms with uneven
/// counts (zero included) and gaps between blocks, the non-blocking and Codable forms, and
/// the errors. Every rank computes what it must get.
func gatheringSuite(_ h: Harness) throws {
    selectionTable(h)
    // With --large: 8 MiB worth, of the algorithms for long messages only, on the world.
    if h.large { try gatheringChecks(h, h.world, SIMD3<Double>.self, full: false, large: true) }
    for comm in h.communicators {
        try gatheringChecks(h, comm, Int32.self, full: true)
        try gatheringChecks(h, comm, UInt8.self, full: false)
        try gatheringChecks(h, comm, Double.self, full: false)
        try gatheringChecks(h, comm, SIMD3<Double>.self, full: false)
        try gatheringChecks(h, comm, Sample.self, full: false)
        try gatheringObjects(h, comm)
        try gatheringInFlight(h, comm)
        try gatheringErrors(h, comm)
    }
}

/// An element the gathering checks can make from a number and compare.
protocol GatherElement: BitwiseCopyable, Equatable {
    static func make(_ v: Int) -> Self
}
extension UInt8: GatherElement { static func make(_ v: Int) -> UInt8 { UInt8(truncatingIfNeeded: v) } }
extension Int32: GatherElement { static func make(_ v: Int) -> Int32 { Int32(truncatingIfNeeded: v) } }
extension Double: GatherElement { static func make(_ v: Int) -> Double { Double(v) } }
extension SIMD3: GatherElement where Scalar == Double { static func make(_ v: Int) -> SIMD3<Double> { SIMD3(Double(v), -Double(v), 0.5) } }
/// A user struct with padding inside (stride 16).
struct Sample: GatherElement {
    var a: Int16
    var b: Double
    static func make(_ v: Int) -> Sample { Sample(a: Int16(truncatingIfNeeded: v), b: Double(v) / 4) }
}

/// Element `i` of what rank `from` brings (for rank `to`, in alltoall): distinct per triple.
func element<T: GatherElement>(_: T.Type, from: Int, to: Int = 0, _ i: Int) -> T { T.make(from * 10_007 + to * 101 + i) }
func block<T: GatherElement>(_: T.Type, from: Int, to: Int = 0, count n: Int) -> [T] { (0..<n).map { element(T.self, from: from, to: to, $0) } }

/// The uneven count rank `r` brings in the v checks (zero for every third rank).
func unevenCount(_ r: Int, _ n: Int) -> Int { r % 3 == 1 ? 0 : n + r }

func gatheringChecks<T: GatherElement>(_ h: Harness, _ comm: Communicator, _: T.Type, full: Bool, large: Bool = false) throws {
    let p = comm.size, me = comm.rank
    let roots = large ? [p / 2] : full ? Set([0, p - 1, p / 2]).sorted() : [p - 1]
    // The harness's counts short of --large's (0, 1, a prime); the other types only the last.
    let small = h.counts(T.self).filter { $0 <= 13 }
    // 8 MiB worth (large) only with the algorithm meant for long messages.
    func counts(_ op: CollectiveOperation, _ alg: CollectiveAlgorithm, long: CollectiveAlgorithm) -> [Int] {
        if large { return alg == long ? [h.counts(T.self).last!] : [] }
        return full ? small : [small.last!]
    }
    let junk = T.make(-99)
    let name = "\(T.self) on \(p) ranks"

    try h.forEachAlgorithm(.gather) { alg in
        for root in roots {
            for n in counts(.gather, alg, long: .linear) {
                let mine = block(T.self, from: me, count: n)
                let got = try comm.gather(mine, root: root)
                if me == root {
                    h.expect(got != nil, "gather \(alg) \(name): nil at the root")
                    for r in 0..<p { h.expectEqual(got![r], block(T.self, from: r, count: n), "gather \(alg) \(name) root \(root) count \(n), block of rank \(r)") }
                } else { h.expect(got == nil, "gather \(alg) \(name): a result off the root") }
                guard n <= 13 else { continue }
                // In place: the root's own block is in its output already.
                var out = [T](repeating: junk, count: me == root ? n * p : 0)
                if me == root { for i in 0..<n { out[root * n + i] = mine[i] } }
                try out.withUnsafeMutableBufferPointer { (o) throws in
                    if me == root { try comm.gather(UnsafeBufferPointer(rebasing: o[0..<n]), into: o, root: root) }
                    else { try mine.withUnsafeBufferPointer { try comm.gather($0, into: o, root: root) } }
                }
                if me == root { h.expectEqual(out, (0..<p).flatMap { block(T.self, from: $0, count: n) }, "gather \(alg) in place \(name) root \(root) count \(n)") }
                let request = try comm.igather(mine, root: root)
                let later = try request.wait()
                if me == root { h.expectEqual(later?.flatMap { $0 } ?? [], (0..<p).flatMap { block(T.self, from: $0, count: n) }, "igather \(alg) \(name) root \(root) count \(n)") }
            }
        }
    }

    try h.forEachAlgorithm(.scatter) { alg in
        for root in roots {
            for n in counts(.scatter, alg, long: .linear) {
                let chunks = me == root ? (0..<p).map { block(T.self, from: root, to: $0, count: n) } : []
                h.expectEqual(try comm.scatter(chunks, root: root), block(T.self, from: root, to: me, count: n), "scatter \(alg) \(name) root \(root) count \(n)")
                guard n <= 13 else { continue }
                // Buffer form, in place at the root: its own block stays in its input.
                var all = me == root ? chunks.flatMap { $0 } : []
                var out = [T](repeating: junk, count: n)
                try all.withUnsafeMutableBufferPointer { (a) throws in
                    if me == root { try comm.scatter(UnsafeBufferPointer(a), into: a, root: root) }
                    else { try out.withUnsafeMutableBufferPointer { try comm.scatter(UnsafeBufferPointer(a), into: $0, root: root) } }
                }
                if me == root { h.expectEqual(all, chunks.flatMap { $0 }, "scatter \(alg) in place \(name): the root's input changed") }
                else { h.expectEqual(out, block(T.self, from: root, to: me, count: n), "scatter \(alg) buffer form \(name) root \(root) count \(n)") }
                h.expectEqual(try comm.iscatter(chunks, count: n, root: root).wait(), block(T.self, from: root, to: me, count: n), "iscatter \(alg) \(name) root \(root) count \(n)")
            }
        }
    }

    // The v forms of the rooted ones (linear only): uneven counts, gaps of 2 between blocks.
    for root in roots where !large {
        for n in (full ? small : [small.last!]) {
            let cs = (0..<p).map { unevenCount($0, n) }
            var ds = [Int](repeating: 0, count: p)
            for r in 1..<max(p, 1) { ds[r] = ds[r - 1] + cs[r - 1] + 2 }
            let extent = ds[p - 1] + cs[p - 1] + 2
            var expected = [T](repeating: junk, count: extent)
            for r in 0..<p { for i in 0..<cs[r] { expected[ds[r] + i] = element(T.self, from: r, i) } }
            let mine = block(T.self, from: me, count: cs[me])
            // gatherv: buffer form with gaps, then in place, then the array and request forms.
            for inPlace in [false, true] {
                var out = [T](repeating: junk, count: me == root ? extent : 0)
                if inPlace && me == root { for i in 0..<cs[me] { out[ds[me] + i] = mine[i] } }
                try out.withUnsafeMutableBufferPointer { (o) throws in
                    if inPlace && me == root { try comm.gatherv(UnsafeBufferPointer(o), into: o, counts: cs, displacements: ds, root: root) }
                    else { try mine.withUnsafeBufferPointer { try comm.gatherv($0, into: o, counts: me == root ? cs : [], displacements: me == root ? ds : [], root: root) } }
                }
                if me == root { h.expectEqual(out, expected, "gatherv \(name) root \(root) count \(n) in place \(inPlace)") }
            }
            let g = try comm.gatherv(mine, root: root)
            if me == root { h.expectEqual(g?.flatMap { $0 } ?? [], (0..<p).flatMap { block(T.self, from: $0, count: cs[$0]) }, "gatherv array \(name) root \(root) count \(n)") }
            let gr = try comm.igatherv(mine, counts: me == root ? cs : [], root: root).wait()
            if me == root { h.expectEqual(gr?.map(\.count) ?? [], cs, "igatherv counts \(name)"); h.expectEqual(gr!.flatMap { $0 }, g!.flatMap { $0 }, "igatherv \(name) root \(root)") }
            // scatterv: the root's buffer with gaps, then in place, then the array and request forms.
            let source = me == root ? expected : []
            for inPlace in [false, true] {
                var src = source
                var out = [T](repeating: junk, count: cs[me])
                try src.withUnsafeMutableBufferPointer { (a) throws in
                    if inPlace && me == root { try comm.scatterv(UnsafeBufferPointer(a), counts: cs, displacements: ds, into: a, root: root) }
                    else { try out.withUnsafeMutableBufferPointer { try comm.scatterv(UnsafeBufferPointer(a), counts: me == root ? cs : [], displacements: me == root ? ds : [], into: $0, root: root) } }
                }
                if inPlace && me == root { h.expectEqual(src, source, "scatterv in place \(name): the root's input changed") }
                else { h.expectEqual(out, mine, "scatterv \(name) root \(root) count \(n) in place \(inPlace)") }
            }
            let chunks = me == root ? (0..<p).map { block(T.self, from: $0, count: cs[$0]) } : []
            h.expectEqual(try comm.scatter(chunks, root: root), mine, "scatter of uneven chunks \(name) root \(root) count \(n)")
            h.expectEqual(try comm.iscatterv(chunks, count: cs[me], root: root).wait(), mine, "iscatterv \(name) root \(root) count \(n)")
        }
    }

    try h.forEachAlgorithm(.allgather) { alg in
        for n in counts(.allgather, alg, long: .ring) {
            let want = (0..<p).flatMap { block(T.self, from: $0, count: n) }
            let mine = block(T.self, from: me, count: n)
            h.expectEqual(try comm.allgather(mine).flatMap { $0 }, want, "allgather \(alg) \(name) count \(n)")
            guard n <= 13 else { continue }
            var buffer = [T](repeating: junk, count: n * p)
            for i in 0..<n { buffer[me * n + i] = mine[i] }
            try comm.allgather(inPlace: &buffer)
            h.expectEqual(buffer, want, "allgather \(alg) in place \(name) count \(n)")
            h.expectEqual(try comm.iallgather(mine).wait().flatMap { $0 }, want, "iallgather \(alg) \(name) count \(n)")
            // allgatherv: uneven counts with gaps (scratch path), packed (direct), in place.
            let cs = (0..<p).map { unevenCount($0, n) }
            var ds = [Int](repeating: 0, count: p)
            for r in 1..<max(p, 1) { ds[r] = ds[r - 1] + cs[r - 1] + 2 }
            let extent = ds[p - 1] + cs[p - 1] + 2
            var expected = [T](repeating: junk, count: extent)
            for r in 0..<p { for i in 0..<cs[r] { expected[ds[r] + i] = element(T.self, from: r, i) } }
            let own = block(T.self, from: me, count: cs[me])
            for inPlace in [false, true] {
                var out = [T](repeating: junk, count: extent)
                if inPlace { for i in 0..<cs[me] { out[ds[me] + i] = own[i] } }
                try out.withUnsafeMutableBufferPointer { (o) throws in
                    if inPlace { try comm.allgatherv(UnsafeBufferPointer(o), into: o, counts: cs, displacements: ds) }
                    else { try own.withUnsafeBufferPointer { try comm.allgatherv($0, into: o, counts: cs, displacements: ds) } }
                }
                h.expectEqual(out, expected, "allgatherv \(alg) \(name) count \(n) with gaps, in place \(inPlace)")
            }
            let packedWant = (0..<p).map { block(T.self, from: $0, count: cs[$0]) }
            h.expectEqual(try comm.allgatherv(own).flatMap { $0 }, packedWant.flatMap { $0 }, "allgatherv \(alg) packed \(name) count \(n)")
            h.expectEqual(try comm.iallgatherv(own, counts: cs).wait().map(\.count), cs, "iallgatherv \(alg) counts \(name)")
        }
    }

    try h.forEachAlgorithm(.alltoall) { alg in
        for total in counts(.alltoall, alg, long: .pairwise) {
            // 8 MiB worth in all, not per block.
            let n = total > 13 ? total / p : total
            let blocks = (0..<p).map { block(T.self, from: me, to: $0, count: n) }
            let want = (0..<p).flatMap { block(T.self, from: $0, to: me, count: n) }
            h.expectEqual(try comm.alltoall(blocks).flatMap { $0 }, want, "alltoall \(alg) \(name) count \(n)")
            guard n <= 13 else { continue }
            var buffer = blocks.flatMap { $0 }
            try comm.alltoall(inPlace: &buffer)
            h.expectEqual(buffer, want, "alltoall \(alg) in place \(name) count \(n)")
            h.expectEqual(try comm.ialltoall(blocks).wait().flatMap { $0 }, want, "ialltoall \(alg) \(name) count \(n)")
        }
    }

    try h.forEachAlgorithm(.alltoallv) { alg in
        for n in (large ? [] : full ? small : [small.last!]) {
            // Rank r sends rank q (r + 2q + n) % 5 elements (zero for some pairs).
            func c(_ r: Int, _ q: Int) -> Int { (r + 2 * q + n) % 5 }
            let blocks = (0..<p).map { block(T.self, from: me, to: $0, count: c(me, $0)) }
            let want = (0..<p).map { block(T.self, from: $0, to: me, count: c($0, me)) }
            h.expectEqual(try comm.alltoallv(blocks).flatMap { $0 }, want.flatMap { $0 }, "alltoallv \(alg) \(name) count \(n)")
            h.expectEqual(try comm.ialltoallv(blocks, receiveCounts: (0..<p).map { c($0, me) }).wait().flatMap { $0 }, want.flatMap { $0 }, "ialltoallv \(alg) \(name) count \(n)")
            // Buffer form with gaps on both sides (3 before each block sent, 1 after each received).
            let sc = (0..<p).map { c(me, $0) }, rc = (0..<p).map { c($0, me) }
            var sd = [Int](repeating: 3, count: p), rd = [Int](repeating: 0, count: p)
            for q in 1..<max(p, 1) { sd[q] = sd[q - 1] + sc[q - 1] + 3; rd[q] = rd[q - 1] + rc[q - 1] + 1 }
            var input = [T](repeating: junk, count: sd[p - 1] + sc[p - 1])
            for q in 0..<p { for i in 0..<sc[q] { input[sd[q] + i] = blocks[q][i] } }
            var out = [T](repeating: junk, count: rd[p - 1] + rc[p - 1] + 1)
            var expected = out
            for q in 0..<p { for i in 0..<rc[q] { expected[rd[q] + i] = want[q][i] } }
            try input.withUnsafeBufferPointer { (i) throws in
                try out.withUnsafeMutableBufferPointer { try comm.alltoallv(i, sendCounts: sc, sendDisplacements: sd, into: $0, receiveCounts: rc, receiveDisplacements: rd) }
            }
            h.expectEqual(out, expected, "alltoallv \(alg) with gaps \(name) count \(n)")
            // In place: symmetric counts (r + q) % 3, one layout for both directions.
            let sym = (0..<p).map { (me + $0 + n) % 3 }
            var symD = [Int](repeating: 0, count: p)
            for q in 1..<max(p, 1) { symD[q] = symD[q - 1] + sym[q - 1] + 1 }
            var buffer = [T](repeating: junk, count: symD[p - 1] + sym[p - 1] + 1)
            var symWant = buffer
            for q in 0..<p { for i in 0..<sym[q] { buffer[symD[q] + i] = element(T.self, from: me, to: q, i); symWant[symD[q] + i] = element(T.self, from: q, to: me, i) } }
            try buffer.withUnsafeMutableBufferPointer { (b) throws in
                try comm.alltoallv(UnsafeBufferPointer(b), sendCounts: sym, sendDisplacements: symD, into: b, receiveCounts: sym, receiveDisplacements: symD)
            }
            h.expectEqual(buffer, symWant, "alltoallv \(alg) in place \(name) count \(n)")
        }
    }
}

/// Non-blocking gathering collectives in flight together on one communicator, completed in
/// the reverse order of starting (each wait advances the others).
func gatheringInFlight(_ h: Harness, _ comm: Communicator) throws {
    let p = comm.size, me = comm.rank, root = p - 1
    let cs = (0..<p).map { unevenCount($0, 2) }
    let g = try comm.igather(block(Int32.self, from: me, count: 3), root: root)
    let gv = try comm.igatherv(block(Double.self, from: me, count: cs[me]), counts: me == root ? cs : [], root: root)
    let sc = try comm.iscatterv(me == 0 ? (0..<p).map { block(UInt8.self, from: 0, to: $0, count: cs[$0]) } : [], count: cs[me], root: 0)
    let av = try comm.iallgatherv(block(Int32.self, from: me, count: cs[me]), counts: cs)
    let a = try comm.ialltoall((0..<p).map { block(SIMD3<Double>.self, from: me, to: $0, count: 2) })
    let av2 = try comm.ialltoallv((0..<p).map { block(Int32.self, from: me, to: $0, count: ($0 + me) % 3) }, receiveCounts: (0..<p).map { ($0 + me) % 3 })
    h.expectEqual(try av2.wait().flatMap { $0 }, (0..<p).flatMap { block(Int32.self, from: $0, to: me, count: ($0 + me) % 3) }, "ialltoallv in flight with others")
    h.expectEqual(try a.wait().flatMap { $0 }, (0..<p).flatMap { block(SIMD3<Double>.self, from: $0, to: me, count: 2) }, "ialltoall in flight with others")
    h.expectEqual(try av.wait().flatMap { $0 }, (0..<p).flatMap { block(Int32.self, from: $0, count: cs[$0]) }, "iallgatherv in flight with others")
    h.expectEqual(try sc.wait(), block(UInt8.self, from: 0, to: me, count: cs[me]), "iscatterv in flight with others")
    let gvs = try gv.wait()
    let gs = try g.wait()
    if me == root {
        h.expectEqual(gvs?.flatMap { $0 } ?? [], (0..<p).flatMap { block(Double.self, from: $0, count: cs[$0]) }, "igatherv in flight with others")
        h.expectEqual(gs?.flatMap { $0 } ?? [], (0..<p).flatMap { block(Int32.self, from: $0, count: 3) }, "igather in flight with others")
    } else { h.expect(gvs == nil && gs == nil, "igather(v) in flight: a result off the root") }
}

/// The Codable paths of gather and allgather: values of different encoded sizes.
func gatheringObjects(_ h: Harness, _ comm: Communicator) throws {
    let p = comm.size, me = comm.rank
    struct Report: Codable, Equatable { var rank: Int; var name: String; var values: [Double] }
    func report(_ r: Int) -> Report { Report(rank: r, name: String(repeating: "x", count: r * 5), values: (0..<r).map { Double($0) / 3 }) }
    for root in Set([0, p - 1]).sorted() {
        let got = try comm.gather(report(me), root: root)
        if me == root { h.expect(got == (0..<p).map(report), "gather of Codable values at root \(root): \(String(describing: got))") }
        else { h.expect(got == nil, "gather of Codable values: a result off the root") }
    }
    let all = try comm.allgather(["rank": me, "twice": 2 * me])
    h.expect(all == (0..<p).map { ["rank": $0, "twice": 2 * $0] }, "allgather of Codable dictionaries: \(all)")
}

/// Bad arguments and counts that differ between ranks: an error, never a hang or corruption;
/// afterwards the communicator works on.
func gatheringErrors(_ h: Harness, _ comm: Communicator) throws {
    let p = comm.size, me = comm.rank
    let mismatch: Set<MPIError.ErrorClass> = [.count, .truncate]
    func expectFailure(_ classes: Set<MPIError.ErrorClass>, _ what: String, required: Bool = true, _ body: () throws -> Void) {
        h.checks += 1
        do {
            try body()
            if required { h.fail("\(what): no error, expected \(classes.map(\.rawValue).sorted())") }
        } catch let e as MPIError {
            if !classes.contains(e.errorClass) { h.fail("\(what): \(e), expected \(classes.map(\.rawValue).sorted())") }
        } catch { h.fail("\(what): \(error)") }
    }
    // The communicator still works after a failed call, on every rank.
    func stillWorks(_ what: String) throws {
        try comm.barrier()
        h.expectEqual(try comm.allgather([me]).flatMap { $0 }, Array(0..<p), "allgather after \(what)")
    }

    h.expectError(.root, "gather to a root outside the communicator") { _ = try comm.gather([1], root: p) }
    h.expectError(.root, "scatter from a negative root") { _ = try comm.scatter([[1]], root: -1) }
    h.expectError(.root, "igatherv to a root outside the communicator") { _ = try comm.igatherv([1], counts: [], root: p) }
    try stillWorks("a bad root")
    // A freed communicator: every form says so.
    let freed = try comm.dup()
    try freed.free()
    h.expectError(.comm, "gather on a freed communicator") { _ = try freed.gather([1], root: 0) }
    h.expectError(.comm, "scatterv on a freed communicator") { _ = try freed.scatter([[1]], root: 0) }
    h.expectError(.comm, "allgatherv on a freed communicator") { _ = try freed.allgatherv([1]) }
    h.expectError(.comm, "alltoallv on a freed communicator") { _ = try freed.alltoallv([[Int]](repeating: [1], count: p)) }
    h.expectError(.comm, "ialltoall on a freed communicator") { _ = try freed.ialltoall([[Int]](repeating: [1], count: p)) }
    guard p > 1 else { return }

    // Counts that differ between ranks: rank r brings 1 + r elements. Every rank receives
    // from one whose count differs (or waits for one that failed) in allgather and alltoall.
    try h.forEachAlgorithm(.allgather) { alg in
        expectFailure(mismatch, "allgather \(alg) with counts differing between ranks") { _ = try comm.allgather([Int32](repeating: 1, count: 1 + me)) }
        try stillWorks("a mismatched allgather")
    }
    try h.forEachAlgorithm(.alltoall) { alg in
        expectFailure(mismatch, "alltoall \(alg) with counts differing between ranks") {
            _ = try comm.alltoall([[Int32]](repeating: [Int32](repeating: 2, count: 1 + me), count: p))
        }
        try stillWorks("a mismatched alltoall")
    }
    // Rooted ones: every rank that receives fails; a rank that only sends may finish first.
    for root in Set([0, p - 1]).sorted() {
        try h.forEachAlgorithm(.gather) { alg in
            let relative = (me - root + p) % p
            // Two levels: the root is sure to hear (a leader may have only its host's blocks to send).
            let sendsOnly = me != root && (alg == .linear || alg == .hostAware || relative & 1 == 1 || relative == p - 1)
            expectFailure(mismatch, "gather \(alg) root \(root) with counts differing between ranks", required: !sendsOnly) {
                _ = try comm.gather([UInt8](repeating: 1, count: 1 + me), root: root)
            }
            try stillWorks("a mismatched gather")
        }
        try h.forEachAlgorithm(.scatter) { alg in
            let n = me == root ? 3 : 4
            expectFailure(mismatch, "scatter \(alg) root \(root) with a count the root does not share", required: me != root) {
                var out = [Double](repeating: 0, count: n)
                let all = [Double](repeating: 1, count: me == root ? n * p : 0)
                try all.withUnsafeBufferPointer { (i) throws in try out.withUnsafeMutableBufferPointer { try comm.scatter(i, into: $0, root: root) } }
            }
            try stillWorks("a mismatched scatter")
        }
        // gatherv counts at the root saying more than a rank brings.
        expectFailure(mismatch, "gatherv root \(root) expecting more than a rank brings", required: me == root) {
            let cs = (0..<p).map { $0 == (root + 1) % p ? 5 : 2 }
            var out = [Int](repeating: 0, count: me == root ? 2 * p + 3 : 0)
            let (ds, _) = comm.packed(cs)
            try [Int](repeating: me, count: 2).withUnsafeBufferPointer { (i) throws in
                try out.withUnsafeMutableBufferPointer { try comm.gatherv(i, into: $0, counts: cs, displacements: ds, root: root) }
            }
        }
        try stillWorks("a mismatched gatherv")
        // Bad counts at the root: wrong length, negative, too big a buffer needed.
        for (cs, cls, what) in [([1], MPIError.ErrorClass.count, "one count"),
                                ([Int](repeating: -1, count: p), .count, "negative counts"),
                                ([Int](repeating: 100, count: p), .buffer, "counts too big for the output")] {
            expectFailure([cls], "gatherv root \(root) with \(what)", required: me == root) {
                var out = [Int](repeating: 0, count: 2 * p)
                let ds = cs.count == p ? (0..<p).map { $0 * 2 } : [0]
                try [Int](repeating: me, count: cs.count == p && cs[0] == 100 ? 100 : 1).withUnsafeBufferPointer { (i) throws in
                    try out.withUnsafeMutableBufferPointer { try comm.gatherv(i, into: $0, counts: cs, displacements: ds, root: root) }
                }
            }
            try stillWorks("gatherv with \(what)")
            expectFailure([cls], "scatterv root \(root) with \(what)") {
                var out = [Int](repeating: 0, count: 1)
                let ds = cs.count == p ? (0..<p).map { $0 * 2 } : [0]
                try [Int](repeating: me, count: 2 * p).withUnsafeBufferPointer { (i) throws in
                    try out.withUnsafeMutableBufferPointer { try comm.scatterv(i, counts: cs, displacements: ds, into: $0, root: root) }
                }
            }
            try stillWorks("scatterv with \(what)")
        }
        // The root passes the wrong number of chunks: every rank hears of it.
        h.expectError(.count, "scatter of \(p + 1) chunks from root \(root)") {
            _ = try comm.scatter(me == root ? [[Int]](repeating: [1], count: p + 1) : [], root: root)
        }
        try stillWorks("scatter of too many chunks")
    }
    // alltoallv: one rank's output too small for its counts fails the call on every rank
    // (every rank waits for that rank's block).
    try h.forEachAlgorithm(.alltoallv) { alg in
        h.expectError(.buffer, "alltoallv \(alg) with rank 0's output too small") {
            let cs = [Int](repeating: 2, count: p)
            let (ds, total) = comm.packed(cs)
            var out = [Int](repeating: 0, count: me == 0 ? total - 1 : total)
            try [Int](repeating: me, count: total).withUnsafeBufferPointer { (i) throws in
                try out.withUnsafeMutableBufferPointer { try comm.alltoallv(i, sendCounts: cs, sendDisplacements: ds, into: $0, receiveCounts: cs, receiveDisplacements: ds) }
            }
        }
        try stillWorks("alltoallv with a small output")
        expectFailure(mismatch, "alltoallv \(alg) receiving more than is sent") {
            // Every rank expects one more element from its left neighbour than it sends.
            let left = (me - 1 + p) % p
            let sc = [Int](repeating: 2, count: p)
            let rc = (0..<p).map { $0 == left && p > 1 ? 3 : 2 }
            var out = [Int](repeating: 0, count: 2 * p + 1)
            try [Int](repeating: me, count: 2 * p).withUnsafeBufferPointer { (i) throws in
                try out.withUnsafeMutableBufferPointer { try comm.alltoallv(i, sendCounts: sc, sendDisplacements: comm.packed(sc).0, into: $0, receiveCounts: rc, receiveDisplacements: comm.packed(rc).0) }
            }
        }
        try stillWorks("a mismatched alltoallv")
    }
    h.expectError(.count, "alltoall of \(p + 1) blocks") { _ = try comm.alltoall([[Int]](repeating: [me], count: me == 0 ? p + 1 : p)) }
    try stillWorks("alltoall of too many blocks")
}

/// The defaults of the selection table (docs/collectives.md), by layout, size and rank count.
func selectionTable(_ h: Harness) {
    let saved = Selection.forced
    defer { Selection.forced = saved }
    Selection.forced = [:]
    /// `ranks` ranks on `hosts` hosts, round robin.
    func on(_ hosts: Int, _ ranks: Int) -> HostLayout { HostLayout(hostOfMember: (0..<ranks).map { $0 % hosts }) }
    let cases: [(CollectiveOperation, CallShape, CollectiveAlgorithm)] = [
        (.bcast, CallShape(bytes: 16 << 20, ranks: 8, layout: on(1, 8)), .binomial),
        (.bcast, CallShape(bytes: 512 << 10, ranks: 3, layout: on(3, 3)), .scatterAllgather),
        (.bcast, CallShape(bytes: 512 << 10, ranks: 2, layout: on(2, 2)), .binomial),
        (.bcast, CallShape(bytes: 511 << 10, ranks: 8, layout: on(8, 8)), .binomial),
        (.bcast, CallShape(bytes: 8, ranks: 4, layout: on(2, 4)), .hostAware),
        (.barrier, CallShape(bytes: 0, ranks: 4, layout: on(2, 4)), .hostAware),
        (.barrier, CallShape(bytes: 0, ranks: 4, layout: on(1, 4)), .dissemination),
        (.allreduce, CallShape(bytes: 8, ranks: 4, layout: on(2, 4), elements: 2), .hostAware),
        (.allreduce, CallShape(bytes: 8, ranks: 4, layout: on(2, 4), elements: 2, commutative: false), .recursiveDoubling),
        (.allreduce, CallShape(bytes: 8, ranks: 4, layout: HostLayout(hostOfMember: [0, 0, 1, 1]), elements: 2, commutative: false), .hostAware),
        (.gather, CallShape(bytes: 8, ranks: 16, layout: on(1, 16)), .linear),
        (.gather, CallShape(bytes: 8, ranks: 16, layout: on(2, 16)), .hostAware),
        (.gather, CallShape(bytes: 8, ranks: 16, layout: on(16, 16)), .binomial),
        (.reduce, CallShape(bytes: 8, ranks: 4, layout: on(2, 4), elements: 2), .hostAware),
        (.reduce, CallShape(bytes: 8, ranks: 4, layout: on(2, 4), elements: 2, commutative: false), .binomial),
        (.reduce, CallShape(bytes: 8, ranks: 4, layout: HostLayout(hostOfMember: [0, 0, 1, 1]), elements: 2, commutative: false), .hostAware),
        (.reduce, CallShape(bytes: 8, ranks: 4, layout: on(4, 4), elements: 2), .binomial),
        (.scatter, CallShape(bytes: 64 << 10, ranks: 16, layout: on(2, 16)), .linear),
        (.allgather, CallShape(bytes: 8, ranks: 5), .recursiveDoubling),
        (.allgather, CallShape(bytes: 4 << 20, ranks: 4), .ring),
        (.alltoall, CallShape(bytes: 8 << 10, ranks: 8), .bruck),
        (.alltoall, CallShape(bytes: 8, ranks: 7), .pairwise),
        (.alltoall, CallShape(bytes: (8 << 10) + 1, ranks: 9), .pairwise),
        (.alltoallv, CallShape(bytes: 0, ranks: 9), .pairwise),
    ]
    for (op, shape, want) in cases {
        let got = Selection.choose(op, shape)
        h.expect(got == want, "selection of \(op.rawValue) for \(shape): \(got.rawValue), expected \(want.rawValue)")
    }
}
