#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// A connected Unix-domain SOCK_SEQPACKET socket: message boundaries are kept and descriptors
/// travel with the message they belong to (SCM_RIGHTS). Frontend and backend talk over these.
public final class ControlSocket {
    public private(set) var fd: Int32
    /// Largest control message; replies listing many endpoints still fit.
    public static let maxMessage = 64 * 1024
    public static let maxDescriptors = 16

    public init(adopting fd: Int32) { self.fd = fd }

    deinit { close() }

    public func close() {
        if fd >= 0 { closeDescriptor(fd); fd = -1 }
    }

    /// Connects to the backend listening at `path`.
    public static func connect(path: String) throws(MXError) -> ControlSocket {
        let fd = try check("socket(AF_UNIX, SOCK_SEQPACKET)") { cmx_seqpacket_socket() }
        if cmx_unix_connect(fd, path) < 0 {
            let err = errno
            closeDescriptor(fd)
            throw MXError(.backendUnavailable, "cannot reach the backend at \(path): \(String(cString: strerror(err)))")
        }
        return ControlSocket(adopting: fd)
    }

    /// Sends one message with optional descriptors (which stay owned by the caller).
    public func send(_ bytes: [UInt8], fds: [Int32] = []) throws(MXError) {
        _ = try send(bytes, fds: fds, wait: true)
    }

    /// Sends one message; with `wait: false` returns false instead of blocking when the
    /// peer's receive queue is full.
    public func send(_ bytes: [UInt8], fds: [Int32], wait: Bool) throws(MXError) -> Bool {
        guard fd >= 0 else { throw MXError(.backendDied, "the control connection is closed") }
        let rc = bytes.withUnsafeBytes { b in
            fds.withUnsafeBufferPointer { f in
                cmx_send_with_fds(fd, b.baseAddress, b.count, f.baseAddress, Int32(f.count), wait ? 0 : 1)
            }
        }
        if rc < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return false }
            if errno == EPIPE || errno == ECONNRESET {
                throw MXError(.backendDied, "the peer closed the control connection")
            }
            throw systemError("sendmsg")
        }
        return true
    }

    public enum Received {
        case message([UInt8], [Int32])
        case wouldBlock
        case closed
    }

    /// Receives one message. With `wait: false` returns `.wouldBlock` when nothing is queued.
    public func receive(wait: Bool) throws(MXError) -> Received {
        guard fd >= 0 else { return .closed }
        var buffer = [UInt8](repeating: 0, count: ControlSocket.maxMessage)
        var fds = [Int32](repeating: -1, count: ControlSocket.maxDescriptors)
        var nfds: Int32 = 0
        var truncated: Int32 = 0
        let rc = buffer.withUnsafeMutableBytes { b in
            fds.withUnsafeMutableBufferPointer { f in
                cmx_recv_with_fds(fd, b.baseAddress, b.count, f.baseAddress, Int32(f.count), &nfds, &truncated, wait ? 0 : 1)
            }
        }
        if rc < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            if errno == ECONNRESET { return .closed }
            throw systemError("recvmsg")
        }
        let received = Array(fds.prefix(Int(nfds)))
        if rc == 0 && nfds == 0 { return .closed }
        if truncated != 0 {
            received.forEach(closeDescriptor)
            throw MXError(.protocolError, "a control message was truncated")
        }
        return .message(Array(buffer.prefix(rc)), received)
    }

    /// Peer credentials (SO_PEERCRED).
    public func peerCredentials() throws(MXError) -> (pid: Int32, uid: UInt32) {
        var pid: pid_t = 0
        var uid: uid_t = 0
        try check("getsockopt(SO_PEERCRED)") { cmx_peer_credentials(fd, &pid, &uid) }
        return (pid, uid)
    }

    /// Waits until the socket is readable or hung up, or `timeoutMs` passes. True if ready.
    public func waitReadable(timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let rc = poll(&p, 1, timeoutMs)
        return rc > 0
    }
}
