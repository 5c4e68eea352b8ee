#if canImport(Glibc)
import Glibc
#endif

/// The PMI-1 "simple" wire protocol of MPICH: one ASCII line per message, `cmd=NAME` then
/// space-separated `key=value` fields, ending in a newline. The one exception is `abort`,
/// whose `message=` takes the rest of the line unescaped. Client and server share this codec.
public struct PMIMessage: Equatable, Sendable, CustomStringConvertible {
    public var command: String
    public var fields: [(key: String, value: String)]

    public init(_ command: String, _ fields: [(String, String)] = []) {
        self.command = command
        self.fields = fields.map { (key: $0.0, value: $0.1) }
    }

    public subscript(key: String) -> String? {
        fields.first { $0.key == key }?.value
    }

    /// The `rc` field as a number (0 when absent, as MPICH reads it).
    public var rc: Int { Int(self["rc"] ?? "0") ?? -1 }

    /// The line, with its newline.
    public var line: String {
        var s = "cmd=\(command)"
        for f in fields { s += " \(f.key)=\(f.value)" }
        return s + "\n"
    }

    public var description: String { String(line.dropLast()) }

    public static func == (a: PMIMessage, b: PMIMessage) -> Bool {
        a.command == b.command && a.fields.elementsEqual(b.fields) { $0.key == $1.key && $0.value == $1.value }
    }

    /// Parses one line (without its newline). Throws on a line that is not `cmd=...`.
    /// Linear in the line's bytes (an agent's barrier line carries a whole host's puts).
    public static func parse(_ line: Substring) throws(PMIError) -> PMIMessage {
        var bytes = Array(line.utf8)
        if bytes.last == 13 { bytes.removeLast() } // "\r"
        guard line.hasPrefix("cmd=") || line.hasPrefix("mcmd=") else {
            throw PMIError("not a PMI-1 message: \(line.prefix(80))")
        }
        let space: UInt8 = 32, equals: UInt8 = 61
        var fields: [(String, String)] = []
        var command = ""
        var i = 0
        let n = bytes.count
        while i < n {
            while i < n && bytes[i] == space { i += 1 }
            if i == n { break }
            var eq = i
            while eq < n && bytes[eq] != equals { eq += 1 }
            guard eq < n else { throw PMIError("field without '=' in PMI message: \(line.prefix(80))") }
            let key = String(decoding: bytes[i..<eq], as: UTF8.self)
            var end = n
            if !(key == "message" && command == "abort") { // an abort's message is the rest of the line
                end = eq + 1
                while end < n && bytes[end] != space { end += 1 }
            }
            let value = String(decoding: bytes[(eq + 1)..<end], as: UTF8.self)
            i = end
            if key == "cmd" || key == "mcmd" { command = value } else { fields.append((key, value)) }
        }
        return PMIMessage(command, fields)
    }
}

/// A PMI failure: what went wrong, in words.
public struct PMIError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "PMI: \(message)" }
}

/// Lines over a descriptor (socketpair or TCP), buffered, for client and server alike.
///
/// Reading is linear in what arrives: bytes are appended once, each is looked at once for the
/// newline (`scanned`), a line is taken by moving `head`, and the consumed front is dropped
/// only when it is at least half the buffer. A line longer than `lineLimit` is an error as
/// soon as that many bytes came without a newline (a peer cannot make us hoard memory).
///
/// Writing has two forms: `send` blocks until the whole message went (a client, or an agent
/// towards swiftrun, which never blocks on it); `enqueue` never blocks: what the socket does
/// not take now waits in the channel's queue (`queuedBytes`) until `flush`, when the
/// descriptor polls writable. A server uses only `enqueue`, so one peer cannot stop it.
public final class PMILineChannel {
    public let fd: Int32
    var buffer: [UInt8] = []
    /// Where the next line starts in `buffer`.
    var head = 0
    /// How many bytes from `head` on are known to hold no newline.
    var scanned = 0
    /// What `enqueue` holds for the peer; `outHead` is how much of it went already.
    var outbox: [UInt8] = []
    var outHead = 0
    /// The longest line (without its newline) this side takes.
    public var lineLimit: Int
    public private(set) var isClosed = false

    /// What a client takes from its process manager by default: generous (an agent's
    /// barrier_out carries every put of a round); servers set their own, smaller limit.
    public static let defaultLineLimit = 64 << 20
    /// How much one `fill` reads at most.
    static let readSize = 65536

    public init(fd: Int32, lineLimit: Int = PMILineChannel.defaultLineLimit) {
        self.fd = fd
        self.lineLimit = lineLimit
    }

    public func close() {
        if !isClosed { _ = Glibc.close(fd); isClosed = true }
        outbox.removeAll()
        outHead = 0
    }

    /// Writes a whole message, retrying partial writes (blocking).
    public func send(_ m: PMIMessage) throws(PMIError) {
        guard !isClosed else { throw PMIError("the PMI connection is closed (sending \(m.command))") }
        let bytes = Array(m.line.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PMIError("the PMI connection broke while sending \(m.command): \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Writes what the socket takes now, without blocking; returns how many bytes went, or
    /// -1 when the connection is broken.
    public func sendSome(_ bytes: ArraySlice<UInt8>) -> Int {
        guard !isClosed else { return -1 }
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1 }
        return n
    }

    /// Bytes queued by `enqueue` that the socket has not taken yet.
    public var queuedBytes: Int { outbox.count - outHead }

    /// Queues a message and sends what the socket takes now; never blocks. Returns false when
    /// the connection is broken (the queue is dropped: its reader sees the end).
    @discardableResult
    public func enqueue(_ m: PMIMessage) -> Bool {
        guard !isClosed else { return false }
        outbox.append(contentsOf: m.line.utf8)
        return flush()
    }

    /// Sends queued bytes while the socket takes them; never blocks. False when broken.
    @discardableResult
    public func flush() -> Bool {
        while outHead < outbox.count {
            let n = sendSome(outbox[outHead...])
            if n < 0 {
                outbox.removeAll()
                outHead = 0
                return false
            }
            if n == 0 { break }
            outHead += n
        }
        if outHead == outbox.count {
            outbox.removeAll(keepingCapacity: outbox.count <= Self.readSize)
            outHead = 0
        } else if outHead >= Self.readSize && outHead * 2 >= outbox.count {
            outbox.removeFirst(outHead) // amortized: the front goes once it is half the queue
            outHead = 0
        }
        return true
    }

    /// A complete line already buffered, if any. Throws when a line is (or, without its
    /// newline yet, already got) longer than `lineLimit`.
    public func nextBufferedLine() throws(PMIError) -> Substring? {
        let from = head + scanned
        let found: Int? = buffer.withUnsafeBufferPointer { b in
            guard from < b.count, let p = memchr(b.baseAddress! + from, 10, b.count - from) else { return nil }
            return UnsafeRawPointer(b.baseAddress!).distance(to: UnsafeRawPointer(p))
        }
        guard let nl = found else {
            scanned = buffer.count - head
            if scanned > lineLimit { throw PMIError("a line longer than \(lineLimit) bytes (the limit), with no end in sight") }
            return nil
        }
        let length = nl - head
        guard length <= lineLimit else { throw PMIError("a line of \(length) bytes, longer than \(lineLimit) (the limit)") }
        let line = String(decoding: buffer[head..<nl], as: UTF8.self)
        head = nl + 1
        scanned = 0
        return Substring(line)
    }

    /// Reads what is available into the buffer (one read). Returns false at end of stream.
    public func fill() throws(PMIError) -> Bool {
        guard !isClosed else { return false }
        if head > 0 && head * 2 >= buffer.count {
            buffer.removeFirst(head) // amortized: the consumed front goes once it is half the buffer
            head = 0
        }
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.readSize) { chunk -> Result<Bool, PMIError> in
            while true {
                let n = recv(fd, chunk.baseAddress, Self.readSize, 0)
                if n < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    if e == EAGAIN || e == EWOULDBLOCK { return .success(true) } // a non-blocking socket with nothing yet
                    if e == ECONNRESET { return .success(false) }
                    return .failure(PMIError("reading the PMI connection failed: \(String(cString: strerror(e)))"))
                }
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[..<n]))
                return .success(n > 0)
            }
        }.get()
    }

    /// Blocks until a whole message arrives. `waiting`, if given, is called with the
    /// descriptor before each read that would block, and returns once it is readable: work
    /// that must go on while the caller waits (a rank's endpoint acking and resending).
    public func receive(waiting: ((Int32) -> Void)? = nil) throws(PMIError) -> PMIMessage {
        while true {
            if let line = try nextBufferedLine() { return try PMIMessage.parse(line) }
            waiting?(fd)
            guard try fill() else { throw PMIError("the process manager closed the PMI connection") }
        }
    }
}
