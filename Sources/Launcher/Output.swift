#if canImport(Glibc)
import Glibc
#endif
import CMyriXen
import MyriXen

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

    /// Writes `bytes` to one of swiftrun's own outputs. A regular file takes them at once; a
    /// pipe, terminal or socket only as its reader reads, so there swiftrun writes in pieces it
    /// is sure to take (PIPE_BUF after POLLOUT: never a write that blocks) and waits for room in
    /// between, as any program whose output is read slowly. But a stalled reader (a paused
    /// pager, a pipe nobody reads) must not keep swiftrun from ending the job: once a signal
    /// that ends it came, or the job's --timeout passed, what does not fit is dropped
    /// (`OutputStall`).
    static func writeAll(_ bytes: [UInt8], to destination: Int32) {
        var st = stat()
        let regular = fstat(destination, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        var off = 0
        while off < bytes.count {
            if !regular {
                guard OutputStall.waitForRoom(destination) else { return }
            }
            let piece = regular ? bytes.count - off : min(bytes.count - off, Int(PIPE_BUF))
            let n = bytes.withUnsafeBytes { write(destination, $0.baseAddress! + off, piece) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return // our own output is gone (closed pipe): nothing more to do with it
            }
            off += n
        }
    }
}

/// When swiftrun stops waiting for a slow reader of its own output: once the job is ending by
/// a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT to swiftrun) or its `--timeout` passed. Until
/// then output is never dropped.
enum OutputStall {
    /// The job's --timeout, as a monotonic time (no timeout: never).
    nonisolated(unsafe) static var deadline: UInt64 = .max
    /// Set once swiftrun stopped waiting: every later write to a stalled output is dropped at once.
    nonisolated(unsafe) static var abandoned = false

    /// Waits until `fd` takes a write of PIPE_BUF bytes; false when swiftrun should stop waiting.
    static func waitForRoom(_ fd: Int32) -> Bool {
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let rc = poll(&p, 1, abandoned ? 0 : 100)
            if rc > 0 { return p.revents & Int16(POLLOUT) != 0 || p.revents & Int16(POLLERR | POLLHUP | POLLNVAL) == 0 }
            if rc < 0 && errno == EINTR { continue }
            if abandoned || cmx_ending_signal() != 0 || monotonicNanoseconds() >= deadline {
                abandoned = true
                return false
            }
        }
    }
}
