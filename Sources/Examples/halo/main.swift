// halo: 2-D Jacobi relaxation of Laplace's equation on an N x N grid, split into row blocks
// over a communicator of its own (split from the world), with non-blocking halo exchange;
// the blocks are gathered at the end.
// The top edge is held at 1, the others at 0. After the iterations rank 0 checks the result
// against the same computation done serially and prints the difference.
import MPI

let mpi = try MPI.initialize()
defer { mpi.finalize() }
let args = CommandLine.arguments
let n = args.count > 1 ? Int(args[1]) ?? 64 : 64
let iterations = args.count > 2 ? Int(args[2]) ?? 200 : 200
let comm = try mpi.world.split(color: 0, key: mpi.world.rank)! // the solver's own context
let p = comm.size, r = comm.rank

/// One Jacobi sweep over rows 1...rows of `grid` (with halo rows 0 and rows+1), width n.
func sweep(_ grid: [Double], rows: Int) -> [Double] {
    var next = grid
    for i in 1...max(rows, 1) where rows > 0 {
        for j in 1..<(n - 1) {
            next[i * n + j] = 0.25 * (grid[(i - 1) * n + j] + grid[(i + 1) * n + j] + grid[i * n + j - 1] + grid[i * n + j + 1])
        }
    }
    return next
}

// Interior rows 1...n-2 are divided into blocks; row 0 (top, = 1) and row n-1 (= 0) are fixed.
let interior = n - 2
let first = 1 + r * interior / p, last = 1 + (r + 1) * interior / p // my rows: first..<last
let rows = last - first
var grid = [Double](repeating: 0, count: (rows + 2) * n)
if first == 1 { for j in 0..<n { grid[j] = 1 } } // the halo above the first block is the top edge
for _ in 0..<iterations {
    // Post receives for both halos, send my edge rows, then compute.
    var pending: [Request<[Double]>] = []
    var sends: [Request<Void>] = []
    if r > 0 && rows > 0 {
        pending.append(try comm.ireceive(Double.self, count: n, from: .rank(r - 1), tag: 1))
        sends.append(try comm.isend(Array(grid[n..<(2 * n)]), to: r - 1, tag: 2))
    }
    if r < p - 1 && rows > 0 {
        pending.append(try comm.ireceive(Double.self, count: n, from: .rank(r + 1), tag: 2))
        sends.append(try comm.isend(Array(grid[(rows * n)..<((rows + 1) * n)]), to: r + 1, tag: 1))
    }
    for q in pending {
        let halo = try q.wait()
        let from = q.status!.source
        let row = from < r ? 0 : rows + 1
        grid.replaceSubrange((row * n)..<((row + 1) * n), with: halo)
    }
    _ = try Request.waitAll(sends)
    grid = sweep(grid, rows: rows)
}
// Gather the blocks at rank 0 (gatherv: blocks differ in size) and compare with a serial run.
if let blocks = try comm.gatherv(Array(grid[n..<((rows + 1) * n)]), root: 0) {
    var full = [Double](repeating: 0, count: n * n)
    for j in 0..<n { full[j] = 1 }
    for (q, block) in blocks.enumerated() {
        let f = 1 + q * interior / p
        full.replaceSubrange((f * n)..<(f * n + block.count), with: block)
    }
    var serial = [Double](repeating: 0, count: n * n)
    for j in 0..<n { serial[j] = 1 }
    for _ in 0..<iterations { serial = sweep(serial, rows: n - 2) }
    let diff = zip(full, serial).map { abs($0 - $1) }.max() ?? 0
    print("halo: \(n)x\(n), \(iterations) iterations on \(p) ranks; center \(full[(n / 2) * n + n / 2]); max difference from serial \(diff) \(diff < 1e-12 ? "ok" : "WRONG")")
}
