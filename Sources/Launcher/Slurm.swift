import MyriXen

/// What a Slurm allocation says about its hosts: SLURM_JOB_NODELIST (compressed, e.g.
/// `node[10,20-25]`) and SLURM_TASKS_PER_NODE (e.g. `2(x4),1`).
public enum SlurmAllocation {
    /// Expands a compressed node list: `n[1-3],big[08-09],x` -> n1 n2 n3 big08 big09 x.
    public static func expand(nodeList: String) throws(LaunchError) -> [String] {
        var names: [String] = []
        var i = nodeList.startIndex
        while i < nodeList.endIndex {
            // One item: a prefix, optionally a [ranges] part, up to the next top-level comma.
            var prefix = ""
            while i < nodeList.endIndex, nodeList[i] != ",", nodeList[i] != "[" { prefix.append(nodeList[i]); i = nodeList.index(after: i) }
            if i < nodeList.endIndex, nodeList[i] == "[" {
                guard let close = nodeList[i...].firstIndex(of: "]") else {
                    throw LaunchError("SLURM_JOB_NODELIST=\(nodeList): a '[' without ']'")
                }
                let body = nodeList[nodeList.index(after: i)..<close]
                for part in body.split(separator: ",") {
                    let bounds = part.split(separator: "-", maxSplits: 1)
                    guard let lo = Int(bounds[0]), let hi = Int(bounds.count == 2 ? bounds[1] : bounds[0]), lo <= hi, hi - lo < 100_000 else {
                        throw LaunchError("SLURM_JOB_NODELIST=\(nodeList): '\(part)' is not a range")
                    }
                    let width = bounds[0].count
                    guard names.count + (hi - lo) < MXLimits.maxRanksPerJob else {
                        throw LaunchError("SLURM_JOB_NODELIST=\(nodeList): more than \(MXLimits.maxRanksPerJob) nodes, and \(Mapper.perJobLimit)")
                    }
                    for n in lo...hi {
                        let digits = String(n)
                        names.append(prefix + String(repeating: "0", count: max(0, width - digits.count)) + digits)
                    }
                }
                i = nodeList.index(after: close)
                // A suffix after ']' is not something Slurm writes; refuse rather than guess.
                if i < nodeList.endIndex, nodeList[i] != "," {
                    throw LaunchError("SLURM_JOB_NODELIST=\(nodeList): unexpected text after ']'")
                }
            } else if !prefix.isEmpty {
                guard names.count < MXLimits.maxRanksPerJob else {
                    throw LaunchError("SLURM_JOB_NODELIST=\(nodeList): more than \(MXLimits.maxRanksPerJob) nodes, and \(Mapper.perJobLimit)")
                }
                names.append(prefix)
            }
            if i < nodeList.endIndex { i = nodeList.index(after: i) } // the comma
        }
        guard !names.isEmpty else { throw LaunchError("SLURM_JOB_NODELIST is empty") }
        return names
    }

    /// `2(x3),1` -> [2, 2, 2, 1]. Tasks per node at most `MXLimits.maxRanksPerHost`, nodes at
    /// most `MXLimits.maxRanksPerJob`.
    public static func expand(tasksPerNode: String) throws(LaunchError) -> [Int] {
        var out: [Int] = []
        let nodesOver = "more than \(MXLimits.maxRanksPerJob) nodes, and \(Mapper.perJobLimit)"
        func count(_ text: Substring, limit: Int, over: String, _ item: Substring) throws(LaunchError) -> Int {
            switch Count(text, limit: limit) {
            case let .value(n): return n
            case .notPositive: throw LaunchError("SLURM_TASKS_PER_NODE=\(tasksPerNode): '\(item)' is not N or N(xM)")
            case .over: throw LaunchError("SLURM_TASKS_PER_NODE=\(tasksPerNode): '\(item)': \(over)")
            }
        }
        for item in tasksPerNode.split(separator: ",") {
            var times = 1
            var n = item
            if let open = item.firstIndex(of: "(") {
                let inside = item[item.index(after: open)...]
                guard inside.hasPrefix("x"), inside.hasSuffix(")"), inside.count >= 3 else {
                    throw LaunchError("SLURM_TASKS_PER_NODE=\(tasksPerNode): '\(item)' is not N(xM)")
                }
                times = try count(inside.dropFirst().dropLast(), limit: MXLimits.maxRanksPerJob, over: nodesOver, item)
                n = item[..<open]
            }
            let tasks = try count(n, limit: MXLimits.maxRanksPerHost, over: "\(n) tasks is more than \(Mapper.perHostLimit)", item)
            guard out.count + times <= MXLimits.maxRanksPerJob else {
                throw LaunchError("SLURM_TASKS_PER_NODE=\(tasksPerNode): \(nodesOver)")
            }
            out += Array(repeating: tasks, count: times)
        }
        return out
    }

    /// The allocation's hosts with their slots, if this process runs inside one.
    public static func hosts(environment env: [String: String]) throws(LaunchError) -> [HostEntry]? {
        guard env["SLURM_JOB_ID"] != nil, let list = env["SLURM_JOB_NODELIST"] ?? env["SLURM_NODELIST"] else { return nil }
        let names = try expand(nodeList: list)
        let tasks = try env["SLURM_TASKS_PER_NODE"].map { (t) throws(LaunchError) in try expand(tasksPerNode: t) } ?? []
        return names.enumerated().map { i, n in HostEntry(name: n, slots: i < tasks.count ? tasks[i] : 1) }
    }
}
