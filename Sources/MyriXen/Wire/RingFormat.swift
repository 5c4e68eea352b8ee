/// The layout of the shared memory the emulated board's data path runs through: pair rings,
/// the records in them, and the two pages of every endpoint. One home for every offset.
///
/// A pair ring carries the records of one sender endpoint to one receiver endpoint. It is a
/// page of header followed by `cells` cells of 64 bytes (one cache line). A record starts on
/// a cell with a 32-byte header; its payload follows and may spill into more cells.
public enum RingLayout {
    public static let cellSize = 64
    public static let headerPage = 4096
    /// Ring header: magic and geometry.
    public static let magicOffset = 0
    public static let cellsOffset = 8
    /// Consumer position, in cells (own cache line: written by the receiver only).
    public static let headOffset = 64
    /// Non-zero while the producer waits for room (own cache line): set by the producer when
    /// a record does not fit, cleared by the consumer, which then wakes it if it sleeps.
    public static let producerWaitingOffset = 128
    public static let magic: UInt32 = 0x4D59_5258 // "MYRX"
    /// Default data size of one pair ring (64 KiB: 1,024 cells).
    public static let defaultDataBytes = 64 * 1024
    public static let minDataBytes = 16 * 1024
    public static let maxDataBytes = 16 * 1024 * 1024
}

/// The 32-byte record header at the start of a record's first cell.
///
/// `stamp` is written last, with release ordering: it equals the ring position of the record
/// plus one, so a reader that sees the expected stamp sees the whole record. The consumer
/// zeroes the stamp word of every cell it frees, so stale bytes never look like a record.
public enum RecordLayout {
    public static let stampOffset = 0
    public static let matchInfoOffset = 8
    public static let lengthOffset = 16
    public static let kindOffset = 20
    public static let flagsOffset = 21
    public static let cellsOffset = 22
    public static let auxOffset = 24
    public static let headerSize = 32
    /// Rendezvous payload: region id, region generation, offset inside the region.
    public static let rndvRegionOffset = 32
    public static let rndvGenerationOffset = 36
    public static let rndvOffsetOffset = 40
    public static let rndvPayloadSize = 16
    /// Push request payload, after the rendezvous fields: where the sender's half starts in
    /// the message, and the receiver's address it is to be written to.
    public static let pushFromOffset = 48
    public static let pushAddressOffset = 56
    public static let pushPayloadSize = 32
}

/// What a record carries.
public enum RecordKind: UInt8, Sendable {
    /// Tiny, small or medium data, inline.
    case eager = 1
    /// Rendezvous request: the receiver pulls the data from the sender's registered region.
    case rendezvous = 2
    /// Receiver to sender: a synchronous send was matched, or a pull finished (aux = token,
    /// length = bytes the receiver took).
    case notify = 3
    /// Filler up to the ring's end; the next record starts at cell 0.
    case padding = 4
    /// Receiver to sender (frame or ring): send me `length` bytes of your rendezvous message
    /// by copy (aux = the sender's token, match info = the receiver's request, then the
    /// rendezvous fields).
    case pullRequest = 5
    /// Sender to receiver: a piece of a pulled message, inline (aux = the receiver's request,
    /// match info = offset in the message, length = bytes here; `refused` flag when the sender
    /// refused the pull).
    case pullReply = 6
    /// Receiver to sender, between endpoints of one host: write bytes `push from`..`length` of
    /// your rendezvous message into my memory at `push address` (aux = the sender's token, match info = the receiver's request, then the
    /// rendezvous and push fields); the receiver reads the front itself meanwhile. The answer
    /// is a `pullReply` with the `pushed` flag.
    case pushRequest = 7
}

public enum RecordFlags {
    /// Eager data of a synchronous send: the receiver notifies on match.
    public static let sync: UInt8 = 1
    /// Notify: the pull was refused (out of the named region) or failed.
    public static let refused: UInt8 = 2
    /// Pull reply: the sender wrote its part of a split message (match info = bytes written).
    public static let pushed: UInt8 = 4
}

/// The endpoint's protected part: written by the backend only, mapped read-only by the owner
/// and by every connected peer (the memfd is sealed against new writable mappings).
public enum ProtectedPage {
    public static let magicOffset = 0
    public static let ownerPIDOffset = 8
    public static let stateOffset = 12
    public static let sessionOffset = 16
    public static let boardOffset = 20
    public static let endpointOffset = 22
    public static let nicIDOffset = 24
    /// Bumped by the backend when it has an event (peer attached/detached) for the owner.
    public static let attachGenerationOffset = 64
    /// Region table: `MXLimits.regionsPerEndpoint` entries of `regionEntrySize` bytes.
    public static let regionTableOffset = 4096
    public static let regionEntrySize = 32
    public static let regionBaseOffset = 0
    public static let regionLengthOffset = 8
    public static let regionGenerationOffset = 16
    public static let regionActiveOffset = 20
    public static let size = 4096 + MXLimits.regionsPerEndpoint * regionEntrySize

    public static let stateOpen: UInt32 = 1
    public static let stateClosed: UInt32 = 2
}

/// The endpoint's unprotected part: written by its owner, readable by connected peers.
public enum UnprotectedPage {
    /// Non-zero while the owner sleeps on its event channel (own cache line).
    public static let sleepingOffset = 0
    /// Counters, 8 bytes each, from `countersOffset`.
    public static let countersOffset = 64
    public static let size = 4096
}

/// The per-endpoint counters, in the order they sit in the unprotected page.
public enum MXCounter: Int, CaseIterable, Sendable {
    case messagesSent, bytesSent, messagesReceived, bytesReceived
    case unexpectedMessages, rendezvousPulls, pulledBytes
    case refusedPulls, drops, wakeups
    case framesSent, framesReceived, resentFrames
    /// System calls that sent frames, and receives that got them: fewer than the frames when
    /// they go in batches and arrive coalesced.
    case frameSends, frameReceives
    /// Rendezvous messages this receiver split with their sender, and halves this sender
    /// wrote into its receivers' memory (`MXLocalPath.split`).
    case splitPulls, splitPushes

    public var name: String {
        switch self {
        case .messagesSent: "messages sent"
        case .bytesSent: "bytes sent"
        case .messagesReceived: "messages received"
        case .bytesReceived: "bytes received"
        case .unexpectedMessages: "unexpected messages"
        case .rendezvousPulls: "rendezvous pulls"
        case .pulledBytes: "pulled bytes"
        case .refusedPulls: "refused accesses"
        case .drops: "drops"
        case .wakeups: "event-channel wakeups"
        case .framesSent: "wire frames sent"
        case .framesReceived: "wire frames received"
        case .resentFrames: "wire frames resent"
        case .frameSends: "wire sends (system calls)"
        case .frameReceives: "wire receives (system calls)"
        case .splitPulls: "split pulls"
        case .splitPushes: "split pushes"
        }
    }

    @inline(__always) public var offset: Int { UnprotectedPage.countersOffset + rawValue * 8 }
}
