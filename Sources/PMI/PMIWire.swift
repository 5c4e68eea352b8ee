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
    public static func parse(_ line: Substring) throws(PMIError) -> PMIMessage {
        var rest = line
        if rest.hasSuffix("\r") { rest = rest.dropLast() }
        guard rest.hasPrefix("cmd=") || rest.hasPrefix("mcmd=") else {
            throw PMIError("not a PMI-1 message: \(line.prefix(80))")
        }
        var fields: [(String, String)] = []
        var command = ""
        while !rest.isEmpty {
            while rest.first == " " { rest = rest.dropFirst() }
            if rest.isEmpty { break }
            guard let eq = rest.firstIndex(of: "=") else {
                throw PMIError("field without '=' in PMI message: \(line.prefix(80))")
            }
            let key = String(rest[..<eq])
            let afterEq = rest[rest.index(after: eq)...]
            let value: Substring
            if key == "message" && command == "abort" {
                value = afterEq // everything after message= is the text
                rest = ""
            } else if let sp = afterEq.firstIndex(of: " ") {
                value = afterEq[..<sp]
                rest = afterEq[sp...]
            } else {
                value = afterEq
                rest = ""
            }
            if key == "cmd" || key == "mcmd" { command = String(value) } else { fields.append((key, String(value))) }
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
public final class PMILineChannel {
    public let fd: Int32
    var buffer: [UInt8] = []
    public private(set) var isClosed = false

    public init(fd: Int32) { self.fd = fd }

    public func close() {
        if !isClosed { _ = Glibc.close(fd); isClosed = true }
    }

    /// Writes a whole message, retrying partial writes.
    public func send(_ m: PMIMessage) throws(PMIError) {
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

    /// Writes what the socket takes now (non-blocking sockets); returns how many bytes went,
    /// or -1 when the connection is broken.
    public func sendSome(_ bytes: ArraySlice<UInt8>) -> Int {
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1 }
        return n
    }

    /// A complete line already buffered, if any.
    public func nextBufferedLine() -> Substring? {
        guard let nl = buffer.firstIndex(of: 10) else { return nil }
        let line = String(decoding: buffer[..<nl], as: UTF8.self)
        buffer.removeSubrange(...nl)
        return Substring(line)
    }

    /// Reads what is available into the buffer. Returns false at end of stream.
    public func fill() throws(PMIError) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return true } // a non-blocking socket with nothing yet
                if errno == ECONNRESET { return false }
                throw PMIError("reading the PMI connection failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return false }
            buffer.append(contentsOf: chunk[..<n])
            // Lines are bounded (a peer cannot make us hoard memory), generously: an agent's
            // barrier_out carries every put of a round.
            if buffer.count > 64 << 20 && !buffer.contains(10) { throw PMIError("a line longer than 64 MiB") }
            return true
        }
    }

    /// Blocks until a whole message arrives. `waiting`, if given, is called with the
    /// descriptor before each read that would block, and returns once it is readable: work
    /// that must go on while the caller waits (a rank's endpoint acking and resending).
    public func receive(waiting: ((Int32) -> Void)? = nil) throws(PMIError) -> PMIMessage {
        while true {
            if let line = nextBufferedLine() { return try PMIMessage.parse(line) }
            waiting?(fd)
            guard try fill() else { throw PMIError("the process manager closed the PMI connection") }
        }
    }
}
