import MyriXen

/// Where a launch spends its time: moments since swiftrun started, printed with `--verbose`
/// at the end of the job (docs/performance.md shows a breakdown made with it).
enum Timeline {
    nonisolated(unsafe) static var start = monotonicNanoseconds()
    nonisolated(unsafe) static var marks: [(what: String, at: UInt64)] = []

    /// Notes that `what` just happened (the first time only: a moment, not a count).
    static func mark(_ what: String) {
        guard !marks.contains(where: { $0.what == what }) else { return }
        marks.append((what, monotonicNanoseconds()))
    }

    /// "plan 3.1 ms, backends started 3.4 ms, ...": each moment since swiftrun started.
    static var summary: String {
        marks.map { m in
            let tenths = (m.at &- start) / 100_000
            return "\(m.what) \(tenths / 10).\(tenths % 10) ms"
        }.joined(separator: ", ")
    }
}
