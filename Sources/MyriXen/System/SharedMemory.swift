#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// A shared-memory object (memfd) and the helpers to map it. The backend creates these; a
/// frontend only ever receives their descriptors over its control socket (SCM_RIGHTS).
public enum SharedMemory {
    /// Creates an anonymous, sealable shared-memory object of `size` bytes (zero-filled).
    public static func create(name: String, size: Int) throws(MXError) -> Int32 {
        let fd = try check("memfd_create(\(name))") { cmx_memfd_create(name) }
        do {
            try check("ftruncate(\(name), \(size))") { ftruncate(fd, off_t(size)) }
        } catch {
            closeDescriptor(fd)
            throw error
        }
        return fd
    }

    /// Maps `size` bytes of `fd` shared, read-write or read-only.
    public static func map(_ fd: Int32, size: Int, writable: Bool) throws(MXError) -> UnsafeMutableRawPointer {
        let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        guard let p = mmap(nil, size, prot, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw systemError("mmap(\(size) bytes, \(writable ? "rw" : "ro"))")
        }
        return p
    }

    /// Size of the object behind `fd`.
    public static func size(of fd: Int32) throws(MXError) -> Int {
        var st = stat()
        try check("fstat") { fstat(fd, &st) }
        return Int(st.st_size)
    }

    public static func unmap(_ p: UnsafeMutableRawPointer, size: Int) {
        _ = munmap(p, size)
    }

    /// Seals an object's size: a frontend holding it cannot truncate it under the backend's or
    /// a peer's mapping (which would make their next access fault).
    public static func sealSize(_ fd: Int32) throws(MXError) {
        try check("fcntl(F_ADD_SEALS)") { cmx_seal_size(fd) }
    }

    /// Seals an object so that no writable mapping can be made of it from now on; mappings made
    /// before (the backend's own) stay writable. This is how the endpoint's protected part is
    /// readable but not writable by frontends.
    public static func sealAgainstWriters(_ fd: Int32) throws(MXError) {
        try check("fcntl(F_ADD_SEALS)") { cmx_seal_future_write(fd) }
    }

}

/// An event channel: a one-bit doorbell between two parties ("look at the ring"), rebuilt as
/// an eventfd. Notifying is one write(2); the waiter polls it together with its backend socket.
public struct EventChannel: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public static func allocate() throws(MXError) -> EventChannel {
        EventChannel(fd: try check("eventfd") { cmx_eventfd() })
    }

    /// Rings the doorbell. Never blocks (a saturated counter already means "look").
    @inline(__always)
    public func notify() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Clears pending notifications.
    public func drain() {
        var value: UInt64 = 0
        _ = read(fd, &value, 8)
    }
}
