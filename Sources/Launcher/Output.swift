#if canImport(Glibc)
import Glibc
#endif

/// Forwards one rank's stdout or stderr line by line: a line is written whole (with its
/// `[rank] ` prefix when tagging), never split or interleaved mid-line with another rank's.
final class LineForwarder {
    let source: Int32
    let destination: Int32
    let prefix: [UInt8]
    var pending: [UInt8] = []
    private(set) var isOpen = true

    init(source: Int32, destination: Int32, prefix: String) {
        self.source = source
        self.destination = destination
        self.prefix = Array(prefix.utf8)
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
        writeAll(out)
        return true
    }

    /// End of stream: a last line without newline still goes out whole.
    func finish() {
        guard isOpen else { return }
        isOpen = false
        if !pending.isEmpty {
            writeAll(prefix + pending + (prefix.isEmpty ? [] : [10]))
            pending.removeAll()
        }
        close(source)
    }

    func writeAll(_ bytes: [UInt8]) {
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
