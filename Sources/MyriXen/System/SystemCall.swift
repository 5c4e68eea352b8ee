#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The one place that turns `-1` plus `errno` into a thrown `MXError`.
@usableFromInline
func systemError(_ call: String, _ err: Int32 = errno) -> MXError {
    MXError(.system, "\(call) failed: \(String(cString: strerror(err))) (errno \(err))")
}

/// Runs a call returning -1/errno, retrying on EINTR, and throws on failure.
@discardableResult
@inlinable
func check<T: BinaryInteger>(_ call: String, _ body: () -> T) throws(MXError) -> T {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        if errno == EINTR { continue }
        throw systemError(call)
    }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC, served by the vDSO: no syscall).
@inlinable
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Closes a descriptor, ignoring EINTR (Linux closes it anyway).
@inlinable
func closeDescriptor(_ fd: Int32) {
    if fd >= 0 { _ = Glibc.close(fd) }
}

/// Closes `fd` if open and marks it closed (-1), so a second call does nothing.
func closeDescriptor(clearing fd: inout Int32) {
    closeDescriptor(fd)
    fd = -1
}

/// The current process id.
public var currentProcessID: Int32 { getpid() }
