// objects: Codable values between ranks. Each rank sends rank 0 a report (a struct with
// strings, arrays, a dictionary and an optional); rank 0 prints what it got, checked.
import MPI

struct Report: Codable, Equatable {
    var rank: Int
    var host: String
    var primes: [Int]
    var notes: [String: String]
    var warning: String?
}

func primes(below n: Int) -> [Int] { (2..<max(n, 2)).filter { p in (2..<p).allSatisfy { p % $0 != 0 } } }

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let world = mpi.world
let mine = Report(rank: world.rank, host: mpi.processorName, primes: primes(below: 10 + world.rank),
                  notes: ["role": world.rank == 0 ? "collector" : "worker"], warning: world.rank % 2 == 1 ? "odd rank" : nil)
if world.rank == 0 {
    var reports = [mine]
    for _ in 1..<world.size { reports.append(try world.receive(Report.self, from: .any, tag: 3)) }
    for r in reports.sorted(by: { $0.rank < $1.rank }) {
        let ok = r.primes == primes(below: 10 + r.rank) && (r.warning != nil) == (r.rank % 2 == 1)
        print("report from rank \(r.rank) on \(r.host): \(r.primes.count) primes, \(r.notes["role"]!)\(r.warning.map { ", \($0)" } ?? "") \(ok ? "ok" : "WRONG")")
    }
} else {
    try world.send(mine, to: 0, tag: 3)
}
