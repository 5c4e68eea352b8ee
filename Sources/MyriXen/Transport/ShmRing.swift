import CMyriXen

/// Raw little helpers over shared memory, inlined into the fast path.
@usableFromInline
enum Shm {
    @inline(__always) @usableFromInline
    static func load<T: FixedWidthInteger>(_ p: UnsafeRawPointer, _ offset: Int, as: T.Type) -> T {
        p.loadUnaligned(fromByteOffset: offset, as: T.self)
    }
    @inline(__always) @usableFromInline
    static func store<T: FixedWidthInteger>(_ p: UnsafeMutableRawPointer, _ offset: Int, _ value: T) {
        p.storeBytes(of: value, toByteOffset: offset, as: T.self)
    }
}

/// Formats the header page of a new ring (done by the backend when it creates one).
public func formatRing(_ base: UnsafeMutableRawPointer, dataBytes: Int) {
    Shm.store(base, RingLayout.magicOffset, RingLayout.magic)
    Shm.store(base, RingLayout.cellsOffset, UInt32(dataBytes / RingLayout.cellSize))
}

/// Validates a mapped ring and returns its cell count.
public func ringCells(_ base: UnsafeRawPointer, mappedBytes: Int) throws(MXError) -> Int {
    guard Shm.load(base, RingLayout.magicOffset, as: UInt32.self) == RingLayout.magic else {
        throw MXError(.protocolError, "granted memory is not a MyriXen ring")
    }
    let cells = Int(Shm.load(base, RingLayout.cellsOffset, as: UInt32.self))
    guard cells > 0, cells & (cells - 1) == 0,
          RingLayout.headerPage + cells * RingLayout.cellSize <= mappedBytes else {
        throw MXError(.protocolError, "ring geometry \(cells) cells does not fit its \(mappedBytes)-byte grant")
    }
    return cells
}

/// The sending side of a single-producer single-consumer ring of 64-byte cells.
public struct RingProducer {
    @usableFromInline let header: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    @usableFromInline let cells: UInt64
    @usableFromInline var tail: UInt64 = 0
    @usableFromInline var cachedHead: UInt64 = 0

    public init(base: UnsafeMutableRawPointer, cells: Int) {
        header = base
        data = base + RingLayout.headerPage
        self.cells = UInt64(cells)
    }

    /// Largest payload one record may carry: a quarter of the ring, so records always fit, and
    /// never more cells than the record header's 16-bit cell count can say.
    public var maxPayload: Int { Int(min(cells / 4, 32768)) * RingLayout.cellSize - RecordLayout.headerSize }

    /// The piece of a message copied through the ring (`pullReply`): the largest payload that
    /// is a whole number of cells, so pieces keep the message's own alignment.
    public var maxPiece: Int { maxPayload & ~(RingLayout.cellSize - 1) }

    /// Reserves room for a record with `payload` bytes and returns its first cell, or nil when
    /// the ring is full for now. Fill the header fields and payload, then `publish`.
    @inline(__always)
    public mutating func reserve(payload: Int) -> UnsafeMutableRawPointer? {
        let needed = UInt64((RecordLayout.headerSize + payload + RingLayout.cellSize - 1) / RingLayout.cellSize)
        let index = tail & (cells - 1)
        let contiguous = cells - index
        let total = needed <= contiguous ? needed : needed + contiguous
        if tail + total - cachedHead > cells {
            cachedHead = cmx_load_acquire_u64(header + RingLayout.headOffset)
            if tail + total - cachedHead > cells {
                // Full: ask the consumer to wake us when it frees cells, then look once more
                // (the fence orders the flag before that look, against its head store).
                cmx_store_relaxed_u64(header + RingLayout.producerWaitingOffset, 1)
                cmx_fence_seq_cst()
                cachedHead = cmx_load_acquire_u64(header + RingLayout.headOffset)
                if tail + total - cachedHead > cells { return nil }
            }
        }
        if needed > contiguous {
            // Pad to the end of the ring; the record starts again at cell 0.
            let pad = data + Int(index) * RingLayout.cellSize
            Record.write(pad, kind: .padding, length: 0, aux: 0)
            Shm.store(pad, RecordLayout.cellsOffset, UInt16(contiguous))
            cmx_store_release_u64(pad, tail + 1)
            tail += contiguous
            let cell = data
            Shm.store(cell, RecordLayout.cellsOffset, UInt16(needed))
            return cell
        }
        let cell = data + Int(index) * RingLayout.cellSize
        Shm.store(cell, RecordLayout.cellsOffset, UInt16(needed))
        return cell
    }

    /// Makes the reserved record visible to the consumer (release store of its stamp).
    @inline(__always)
    public mutating func publish(_ cell: UnsafeMutableRawPointer) {
        let needed = UInt64(Record.cells(cell))
        cmx_store_release_u64(cell, tail + 1)
        tail += needed
    }
}

/// The receiving side of a pair ring.
public struct RingConsumer {
    @usableFromInline let header: UnsafeMutableRawPointer
    @usableFromInline let data: UnsafeMutableRawPointer
    @usableFromInline let cells: UInt64
    @usableFromInline var head: UInt64 = 0
    /// Set when the producer wrote a record that cannot be (its cell count or length runs past
    /// the ring): the ring is then dead, and its peer is treated as gone.
    public private(set) var isCorrupt = false
    /// The geometry `peek` checked for the record it returned. The producer could rewrite the
    /// shared header afterwards; the consumer uses these, never the header again.
    public private(set) var recordCells: Int = 0
    public private(set) var recordLength: Int = 0
    public private(set) var recordKind: UInt8 = 0

    public init(base: UnsafeMutableRawPointer, cells: Int) {
        header = base
        data = base + RingLayout.headerPage
        self.cells = UInt64(cells)
        head = cmx_load_acquire_u64(base + RingLayout.headOffset)
    }

    /// The next record, if one is complete. Padding is skipped here. The producer is another
    /// process: its record's geometry is checked before anything is read from it.
    @inline(__always)
    public mutating func peek() -> UnsafeMutableRawPointer? {
        while !isCorrupt {
            let index = head & (cells - 1)
            let cell = data + Int(index) * RingLayout.cellSize
            if cmx_load_acquire_u64(cell) != head &+ 1 { return nil }
            let n = UInt64(Record.cells(cell))
            let length = Record.length(cell)
            let kind = Record.kind(cell)
            guard n >= 1, index + n <= cells else { isCorrupt = true; return nil }
            if kind == RecordKind.padding.rawValue {
                recordCells = Int(n)
                release(cell)
                continue
            }
            if (kind == RecordKind.eager.rawValue || kind == RecordKind.pullReply.rawValue)
                && length > Int(n) * RingLayout.cellSize - RecordLayout.headerSize {
                isCorrupt = true
                return nil
            }
            recordCells = Int(n)
            recordLength = length
            recordKind = kind
            return cell
        }
        return nil
    }

    /// Frees the record returned by `peek`: clears the stamp word of each of its cells, then
    /// publishes the new head for the producer.
    @inline(__always)
    public mutating func release(_ cell: UnsafeMutableRawPointer) {
        let n = recordCells
        var c = cell
        for _ in 0..<n {
            cmx_store_relaxed_u64(c, 0)
            c += RingLayout.cellSize
        }
        head &+= UInt64(n)
        cmx_store_release_u64(header + RingLayout.headOffset, head)
    }

    /// Whether the producer waited for room (it is told of the freed cells: the flag is
    /// cleared). Ask after releasing records; the fence orders the head store before the look,
    /// as the producer's orders its flag before its last look at the head.
    @inline(__always)
    public mutating func producerWaited() -> Bool {
        let flag = header + RingLayout.producerWaitingOffset
        cmx_fence_seq_cst()
        guard cmx_load_relaxed_u64(flag) != 0 else { return false }
        cmx_store_relaxed_u64(flag, 0)
        return true
    }
}
