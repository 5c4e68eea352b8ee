/// The one codec of the 24-byte frame header (`FrameLayout`) that every writer and reader of
/// endpoint frames uses: the fields are written and read here and nowhere else. All inlined.
enum Frame {
    /// Who to whom, and what: written once when the frame joins a link's window.
    @inline(__always)
    static func stamp(_ h: UnsafeMutableRawPointer, _ type: FrameType, source: UInt32, target: UInt32, sequence: UInt32 = 0) {
        Shm.store(h, FrameLayout.magicOffset, FrameLayout.magic)
        Shm.store(h, FrameLayout.typeOffset, type.rawValue)
        Shm.store(h, FrameLayout.versionOffset, FrameLayout.version)
        Shm.store(h, FrameLayout.sourceSessionOffset, source)
        Shm.store(h, FrameLayout.targetSessionOffset, target)
        Shm.store(h, FrameLayout.sequenceOffset, sequence)
    }

    /// What changes on every (re)send: the ack carried back and the flags.
    @inline(__always)
    static func setAck(_ h: UnsafeMutableRawPointer, _ ack: UInt32, flags: UInt8) {
        Shm.store(h, FrameLayout.ackOffset, ack)
        Shm.store(h, FrameLayout.flagsOffset, flags)
    }

    /// Whether `n` bytes at `f` start with a frame header of this protocol version.
    @inline(__always)
    static func isFrame(_ f: UnsafeRawPointer, length n: Int) -> Bool {
        n >= FrameLayout.headerSize && Shm.load(f, FrameLayout.magicOffset, as: UInt32.self) == FrameLayout.magic
            && Shm.load(f, FrameLayout.versionOffset, as: UInt8.self) == FrameLayout.version
    }

    @inline(__always)
    static func type(_ f: UnsafeRawPointer) -> UInt8 { Shm.load(f, FrameLayout.typeOffset, as: UInt8.self) }
    @inline(__always)
    static func flags(_ f: UnsafeRawPointer) -> UInt8 { Shm.load(f, FrameLayout.flagsOffset, as: UInt8.self) }
    @inline(__always)
    static func source(_ f: UnsafeRawPointer) -> UInt32 { Shm.load(f, FrameLayout.sourceSessionOffset, as: UInt32.self) }
    @inline(__always)
    static func target(_ f: UnsafeRawPointer) -> UInt32 { Shm.load(f, FrameLayout.targetSessionOffset, as: UInt32.self) }
    @inline(__always)
    static func sequence(_ f: UnsafeRawPointer) -> UInt32 { Shm.load(f, FrameLayout.sequenceOffset, as: UInt32.self) }
    @inline(__always)
    static func ack(_ f: UnsafeRawPointer) -> UInt32 { Shm.load(f, FrameLayout.ackOffset, as: UInt32.self) }
}
