/// The frontend's registration cache: buffers registered with the backend, so that a buffer
/// sent again is not registered again. A region covering the whole buffer is a hit. Entries
/// in use by an unfinished send are pinned; the least recently used unpinned entry is the
/// one to evict when all `MXLimits.regionsPerEndpoint` region ids are taken.
public struct RegistrationCache {
    public struct Entry: Equatable {
        public var base: UInt64
        public var length: UInt64
        public var regionID: UInt32
        public var generation: UInt32
        public var pins: Int32
        public var lastUse: UInt64
    }

    public private(set) var entries: [Entry] = []
    public let capacity: Int
    var clock: UInt64 = 0
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int = MXLimits.regionsPerEndpoint) { self.capacity = capacity }

    /// Looks up a region covering `[base, base + length)`; a hit pins it. Returns the entry index.
    public mutating func lookup(base: UInt64, length: UInt64) -> Int? {
        clock += 1
        for i in entries.indices {
            let e = entries[i]
            if e.base <= base && base + length <= e.base + e.length {
                entries[i].pins += 1
                entries[i].lastUse = clock
                hits += 1
                return i
            }
        }
        misses += 1
        return nil
    }

    public var isFull: Bool { entries.count >= capacity }

    /// The unpinned entry used least recently, to evict when full (nil: all are pinned).
    public func evictionCandidate() -> Int? {
        var best: Int?
        for i in entries.indices where entries[i].pins == 0 {
            if best == nil || entries[i].lastUse < entries[best!].lastUse { best = i }
        }
        return best
    }

    /// Adds a pinned entry for a region the backend just registered. Returns its index.
    public mutating func insert(base: UInt64, length: UInt64, regionID: UInt32, generation: UInt32) -> Int {
        clock += 1
        entries.append(Entry(base: base, length: length, regionID: regionID, generation: generation, pins: 1, lastUse: clock))
        return entries.count - 1
    }

    /// Removes the entry at `index` (after the backend deregistered it). Indices above shift.
    @discardableResult
    public mutating func remove(at index: Int) -> Entry {
        entries.remove(at: index)
    }

    public mutating func unpin(regionID: UInt32) {
        // By index: the generic firstIndex(where:) allocates per element unspecialized.
        var i = 0
        while i < entries.count && entries[i].regionID != regionID { i += 1 }
        if i < entries.count && entries[i].pins > 0 { entries[i].pins -= 1 }
    }

    /// Entries overlapping `[base, base + length)` that are not pinned: what to deregister when
    /// the memory is given back. Pinned entries stay (a send still reads them).
    public func overlapping(base: UInt64, length: UInt64) -> [Int] {
        entries.indices.filter { i in
            let e = entries[i]
            return e.pins == 0 && e.base < base + length && base < e.base + e.length
        }
    }
}
