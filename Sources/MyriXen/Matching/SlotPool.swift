/// A growable pool of fixed-size slots addressed by index, with a free list. Indices stay
/// valid across growth (slots move, so hold indices, never pointers). Allocation-free once
/// warm: growth doubles, so the steady state never calls malloc.
public struct SlotPool<Element> {
    @usableFromInline var storage: UnsafeMutablePointer<Element>
    @usableFromInline var nextFree: UnsafeMutablePointer<Int32>
    @usableFromInline var capacity: Int32
    @usableFromInline var freeHead: Int32
    @usableFromInline var blank: Element
    public private(set) var inUse: Int = 0

    public init(capacity: Int, blank: Element) {
        self.capacity = Int32(capacity)
        self.blank = blank
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: blank, count: capacity)
        nextFree = .allocate(capacity: capacity)
        for i in 0..<capacity { nextFree[i] = Int32(i + 1 < capacity ? i + 1 : -1) }
        freeHead = 0
    }

    /// Frees the memory. The pool must not be used afterwards.
    public mutating func destroy() {
        storage.deinitialize(count: Int(capacity))
        storage.deallocate()
        nextFree.deallocate()
        capacity = 0
    }

    @inline(__always)
    public mutating func allocate() -> Int32 {
        if freeHead < 0 { grow() }
        let i = freeHead
        freeHead = nextFree[Int(i)]
        nextFree[Int(i)] = -2 // marks "in use"
        inUse += 1
        return i
    }

    /// Returns a slot to the pool. Its contents stay as they were: whoever allocates it next
    /// writes what it needs (so freeing costs no copy).
    @inline(__always)
    public mutating func free(_ i: Int32) {
        nextFree[Int(i)] = freeHead
        freeHead = i
        inUse -= 1
    }

    @inline(__always)
    public func isAllocated(_ i: Int32) -> Bool {
        i >= 0 && i < capacity && nextFree[Int(i)] == -2
    }

    public var count: Int { Int(capacity) }

    @inline(__always)
    public subscript(i: Int32) -> UnsafeMutablePointer<Element> {
        storage + Int(i)
    }

    @usableFromInline
    mutating func grow() {
        let old = Int(capacity)
        let new = old * 2
        let s = UnsafeMutablePointer<Element>.allocate(capacity: new)
        s.moveInitialize(from: storage, count: old)
        (s + old).initialize(repeating: blank, count: old)
        storage.deallocate()
        storage = s
        let n = UnsafeMutablePointer<Int32>.allocate(capacity: new)
        n.update(from: nextFree, count: old)
        for i in old..<new { n[i] = Int32(i + 1 < new ? i + 1 : -1) }
        nextFree.deallocate()
        nextFree = n
        freeHead = Int32(old)
        capacity = Int32(new)
    }
}
