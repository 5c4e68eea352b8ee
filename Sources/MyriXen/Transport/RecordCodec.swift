/// The one codec of the 32-byte record header (`RecordLayout`) that every writer and reader of
/// the data path uses, whether the record sits in a pair ring's cells or in a wire frame: the
/// fields are written and read here and nowhere else. All inlined: the hot path stays a few
/// stores and loads.
@usableFromInline
enum Record {
    /// Writes the header fields of a record (the ring's `publish` writes the stamp, and
    /// `reserve` the cell count).
    @inline(__always) @usableFromInline
    static func write(_ cell: UnsafeMutableRawPointer, kind: RecordKind, flags: UInt8 = 0, length: Int,
                      matchInfo: UInt64 = 0, aux: UInt64) {
        Shm.store(cell, RecordLayout.matchInfoOffset, matchInfo)
        Shm.store(cell, RecordLayout.lengthOffset, UInt32(truncatingIfNeeded: length))
        Shm.store(cell, RecordLayout.kindOffset, kind.rawValue)
        Shm.store(cell, RecordLayout.flagsOffset, flags)
        Shm.store(cell, RecordLayout.auxOffset, aux)
    }

    /// The rendezvous fields (of a rendezvous record and of a pull request).
    @inline(__always) @usableFromInline
    static func writeRegion(_ cell: UnsafeMutableRawPointer, region: UInt32, generation: UInt32, offset: UInt64) {
        Shm.store(cell, RecordLayout.rndvRegionOffset, region)
        Shm.store(cell, RecordLayout.rndvGenerationOffset, generation)
        Shm.store(cell, RecordLayout.rndvOffsetOffset, offset)
    }

    /// The push fields of a push request: where the sender's part starts, where it goes.
    @inline(__always) @usableFromInline
    static func writePush(_ cell: UnsafeMutableRawPointer, from: Int, into address: UInt64) {
        Shm.store(cell, RecordLayout.pushFromOffset, UInt64(from))
        Shm.store(cell, RecordLayout.pushAddressOffset, address)
    }

    @inline(__always) @usableFromInline
    static func push(_ cell: UnsafeRawPointer) -> (from: UInt64, into: UInt64) {
        (Shm.load(cell, RecordLayout.pushFromOffset, as: UInt64.self),
         Shm.load(cell, RecordLayout.pushAddressOffset, as: UInt64.self))
    }

    /// Where a record's inline data starts.
    @inline(__always) @usableFromInline
    static func payload(_ cell: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer { cell + RecordLayout.headerSize }

    @inline(__always) @usableFromInline
    static func matchInfo(_ cell: UnsafeRawPointer) -> UInt64 { Shm.load(cell, RecordLayout.matchInfoOffset, as: UInt64.self) }
    @inline(__always) @usableFromInline
    static func length(_ cell: UnsafeRawPointer) -> Int { Int(Shm.load(cell, RecordLayout.lengthOffset, as: UInt32.self)) }
    @inline(__always) @usableFromInline
    static func kind(_ cell: UnsafeRawPointer) -> UInt8 { Shm.load(cell, RecordLayout.kindOffset, as: UInt8.self) }
    @inline(__always) @usableFromInline
    static func flags(_ cell: UnsafeRawPointer) -> UInt8 { Shm.load(cell, RecordLayout.flagsOffset, as: UInt8.self) }
    @inline(__always) @usableFromInline
    static func aux(_ cell: UnsafeRawPointer) -> UInt64 { Shm.load(cell, RecordLayout.auxOffset, as: UInt64.self) }
    @inline(__always) @usableFromInline
    static func cells(_ cell: UnsafeRawPointer) -> Int { Int(Shm.load(cell, RecordLayout.cellsOffset, as: UInt16.self)) }

    /// The rendezvous fields: region id, its generation, the offset inside it.
    @inline(__always) @usableFromInline
    static func region(_ cell: UnsafeRawPointer) -> (id: UInt32, generation: UInt32, offset: UInt64) {
        (Shm.load(cell, RecordLayout.rndvRegionOffset, as: UInt32.self),
         Shm.load(cell, RecordLayout.rndvGenerationOffset, as: UInt32.self),
         Shm.load(cell, RecordLayout.rndvOffsetOffset, as: UInt64.self))
    }

    /// A request's token as records carry it: generation in the high 32 bits, index in the low.
    @inline(__always) @usableFromInline
    static func token(_ index: Int32, _ generation: UInt32) -> UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: index)) }
}
