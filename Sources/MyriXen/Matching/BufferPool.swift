#if canImport(Glibc)
import Glibc
#endif

/// Buffers for what arrives before its receive is posted (an unexpected eager message's
/// payload, copied out of the ring so the ring moves on), kept by size class once freed, so
/// the steady state, in which the same sizes come unexpected again and again (a gather's
/// leaves sending before the root posts), never calls malloc. Classes are powers of two from
/// 64 bytes to 64 KiB, each keeping up to `kept(class)` free buffers (256 of the small ones,
/// which oversubscribed ranks pile up, and at most 1 MiB of each larger class); longer
/// payloads and overflow go straight to malloc and free.
public struct BufferPool {
    static let smallestShift = 6
    static let classes = 11 // 64 B ... 64 KiB
    public static let kept = 256
    @inline(__always) static func kept(_ c: Int) -> Int { min(kept, max(16, (1 << 20) >> (c + smallestShift))) }
    /// `classes` stacks of up to `kept` free buffers each, and how full each is.
    var free: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    var counts: UnsafeMutablePointer<Int>
    public private(set) var reused = 0

    public init() {
        free = .allocate(capacity: BufferPool.classes * BufferPool.kept)
        free.initialize(repeating: nil, count: BufferPool.classes * BufferPool.kept)
        counts = .allocate(capacity: BufferPool.classes)
        counts.initialize(repeating: 0, count: BufferPool.classes)
    }

    /// Frees every kept buffer and the pool's own memory; the pool must not be used afterwards.
    public mutating func destroy() {
        for c in 0..<BufferPool.classes {
            for i in 0..<counts[c] { Glibc.free(free[c * BufferPool.kept + i]) }
        }
        free.deallocate()
        counts.deallocate()
    }

    /// The class of `bytes` (nil: above the largest, malloc'ed as asked).
    @inline(__always) static func sizeClass(_ bytes: Int) -> Int? {
        let bits = bytes <= 1 << smallestShift ? smallestShift : Int.bitWidth - (bytes - 1).leadingZeroBitCount
        let c = bits - smallestShift
        return c < classes ? c : nil
    }

    /// A buffer of at least `bytes` (> 0), or nil when memory ran out.
    @inline(__always) public mutating func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard let c = BufferPool.sizeClass(bytes) else { return malloc(bytes) }
        if counts[c] > 0 {
            counts[c] -= 1
            reused &+= 1
            return free[c * BufferPool.kept + counts[c]]
        }
        return malloc(1 << (c + BufferPool.smallestShift))
    }

    /// Gives back a buffer `take(bytes)` returned.
    @inline(__always) public mutating func give(_ buffer: UnsafeMutableRawPointer, bytes: Int) {
        guard let c = BufferPool.sizeClass(bytes), counts[c] < BufferPool.kept(c) else { return Glibc.free(buffer) }
        free[c * BufferPool.kept + counts[c]] = buffer
        counts[c] += 1
    }
}
