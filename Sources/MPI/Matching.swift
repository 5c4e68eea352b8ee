/// How MPI's (communicator, source, tag) becomes the channel's 64-bit match info, and back:
/// `[context id: 16][source rank: 24][tag: 24]`. A receive from any source or with any tag
/// clears those bits from its mask; traffic of different communicators never matches.
public enum MatchBits {
    public static let tagBits: UInt64 = 24
    public static let sourceBits: UInt64 = 24
    public static let maxTag = Int(1 << (tagBits - 1)) - 1 // MPI_TAG_UB (negative tags are invalid)
    public static let maxRanks = Int(1 << sourceBits)

    @inline(__always)
    public static func info(context: UInt16, source: Int, tag: Int) -> UInt64 {
        UInt64(context) << (tagBits + sourceBits) | UInt64(source) << tagBits | UInt64(tag)
    }

    @inline(__always)
    public static func receive(context: UInt16, source: Int?, tag: Int?) -> (info: UInt64, mask: UInt64) {
        var mask: UInt64 = 0xFFFF << (tagBits + sourceBits)
        var info = UInt64(context) << (tagBits + sourceBits)
        if let s = source { mask |= ((1 << sourceBits) - 1) << tagBits; info |= UInt64(s) << tagBits }
        if let t = tag { mask |= (1 << tagBits) - 1; info |= UInt64(t) }
        return (info, mask)
    }

    @inline(__always)
    public static func source(_ info: UInt64) -> Int { Int((info >> tagBits) & ((1 << sourceBits) - 1)) }

    @inline(__always)
    public static func tag(_ info: UInt64) -> Int { Int(info & ((1 << tagBits) - 1)) }
}
