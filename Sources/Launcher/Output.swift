#if canImport(Glibc)
import Glibc
#endif

/// Forwards one rank's stdout or stderr line by line: a line is written whole (with its
/// `[rank] ` prefix when tagging), never split or interleaved mid-line with another rank's.
final class LineForwarder {
    let source: Int32
    let sink: ([UInt8]) -> Void
    let prefix: [UInt8]
    var pending: [UInt8] = []
    private(set) var isOpen = true

    /// Lines go to `destination`, a descriptor of this process.
    convenience init(source: Int32, destination: Int32, prefix: String) {
        self.init(source: source, prefix: prefix) { LineForwarder.writeAll($0, to: destination) }
    }

    /// Lines (whole ones, a batch at a time) go to `sink`: an agent sends them to swiftrun.
    init(source: Int32, prefix: String, sink: @escaping ([UInt8]) -> Void) {
        self.source = source
        self.sink = sink
        self.prefix = Array(prefix.utf8)
    }

    /// Prefixes every line of `bytes` (complete lines) with `prefix`.
    static func tag(_ bytes: [UInt8], with prefix: [UInt8]) -> [UInt8] {
        guard !prefix.isEmpty else { return bytes }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + prefix.count * 4)
        var atStart = true
        for b in bytes {
            if atStart { out += prefix }
            out.append(b)
            atStart = b == 10
        }
        return out
    }

    /// Reads what is there and writes out complete lines. Returns false at end of stream.
    @discardableResult
    func pump() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { return true }
            finish()
            return false
        }
        if n == 0 {
            finish()
            return false
        }
        pending.append(contentsOf: chunk[..<n])
        var out: [UInt8] = []
        var start = 0
        while let nl = pending[start...].firstIndex(of: 10) {
            out += prefix
            out += pending[start...nl]
            start = nl + 1
        }
        pending.removeFirst(start)
        if pending.count > 1 << 20 { // a line of over 1 MiB goes out in pieces rather than hoarding memory
            out += prefix + pending + [10]
            pending.removeAll()
        }

        if !out.isEmpty { sink(out) }
        return true
    }

    /// End of stream: a last line without newline still goes out whole.
    func finish() {
        guard isOpen else { return }
        isOpen = false
        if !pending.isEmpty {
            sink(prefix + pending + (prefix.isEmpty ? [] : [10]))
            pending.removeAll()
        }
        close(source)
    }

    static func writeAll(_ bytes: [UInt8], to destination: Int32) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(destination, $0.baseAddress! + off, bytes.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                return // our own output is gone (closed pipe): nothing more to do with it
            }
            off += n
        }
    }
}
