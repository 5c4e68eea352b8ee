import CMyriXen

/// The emulated wire between hosts: UDP datagrams, as Open-MX sends Ethernet frames. Each
/// backend with a wire owns the board's port on its wire address (backend to backend: connect
/// and close notices); each endpoint owns a socket of its own (its wire queue), through which
/// its frames go straight to the peer endpoint's socket, without any backend. Reliability is
/// the NIC's, done here in the endpoint: sequence numbers per pair, cumulative acks,
/// go-back-N resends (docs/myrixen.md, "Between hosts").
public enum MXWire {
    /// The UDP port of every board on its wire address (all hosts of a cluster use the same).
    public static let port: UInt16 = 2314
    /// myrback's default for `--wire`: an IPv4 address, `auto`, or `none`.
    public static let environment = "MYRIXEN_WIRE"
    /// Socket buffer of each wire socket (root gets it even past the system limits).
    static let socketBufferBytes: Int32 = 4 << 20
    /// A frame is one UDP datagram that fits the link's MTU unfragmented: at most the MTU less
    /// the IP and UDP headers, of both ends' links (`frameLimit`), and never more than an IPv4
    /// datagram holds, nor less than IPv4's minimum reassembly size (576) allows.
    static let ipUDPHeaders = 28
    static let maxFrame = 65_507
    static let minFrame = 576 - ipUDPHeaders
    /// myrback's default for `--wire-mtu`, where set: take the wire's MTU as this (at most the
    /// interface's), for a path whose MTU is smaller than the host's link.
    public static let mtuEnvironment = "MYRIXEN_WIRE_MTU"
    /// The largest frame between a host whose wire interface has MTU `mtu` and any other.
    public static func frameLimit(mtu: Int) -> Int { clampFrame(mtu - ipUDPHeaders) }
    /// A frame size within what any link takes (`minFrame` to `maxFrame`).
    static func clampFrame(_ bytes: Int) -> Int { min(maxFrame, max(minFrame, bytes)) }
    /// Frames of one link handed to the kernel in one system call: a run of frames of the
    /// link's frame size (the last may be shorter), cut by the kernel (UDP segmentation
    /// offload), at most this many and `maxBatchBytes` in all (what one IPv4 datagram holds).
    static let maxBatchFrames = 64
    static let maxBatchBytes = maxFrame
    /// Testing and fallback: `0` sends every frame as a datagram of its own (several per
    /// system call, sendmmsg) and receives them one by one (no UDP_SEGMENT, no UDP_GRO).
    public static let offloadEnvironment = "MYRIXEN_WIRE_OFFLOAD"
    /// Frames of one pair kept until acked (queued and in flight); a power of two.
    static let window = 256
    /// Frames of one pair in flight at once, and at most a quarter of the bytes the peer's
    /// socket says it can hold (the kernel reports twice what it stores of payload, and
    /// several peers may send at once).
    static let maxInFlight: UInt32 = 192
    static let inFlightShareOfReceiveBuffer = 4
    /// Acks: with this many frames unacked, on the pass after the one that took them in (the
    /// answer to what came, a data frame, may carry the ack first, sparing a system call on the
    /// message's path); at once when the peer says `ack now` or sent out of sequence; else
    /// after `ackDelayNanoseconds`.
    static let ackEvery = 4
    static let ackDelayNanoseconds: UInt64 = 1_000_000
    /// Resend of unacked frames: first after 20 ms, doubling up to MX's 0.5 s, for as long as
    /// the peer's host is alive (a busy peer acks only when it calls in; its backend answers
    /// for it meanwhile, below).
    static let firstResendNanoseconds: UInt64 = 20_000_000
    static let maxResendNanoseconds: UInt64 = 500_000_000
    /// Host liveness: backends with endpoints paired across hosts say "alive" to each other's
    /// board port every 250 ms (well inside the shortest host timeout any of them may use, 1 s);
    /// a host silent for its timeout (`myrback --host-timeout`, default 10 s) is gone, and every
    /// pair with it ends.
    static let heartbeatNanoseconds: UInt64 = 250_000_000
    public static let defaultHostTimeoutSeconds = 10
    /// myrback's default for `--host-timeout`, where set (it reaches the backends swiftrun starts).
    public static let hostTimeoutEnvironment = "MYRIXEN_HOST_TIMEOUT"
    /// How long closing an endpoint waits for its last frames to be acked: as long as a peer's
    /// host may stay silent by default before it is declared lost.
    static let lingerNanoseconds = UInt64(defaultHostTimeoutSeconds) * 1_000_000_000
    /// A backend's connect request to another host: resent every 250 ms, for up to 10 s.
    static let connectResendNanoseconds: UInt64 = 250_000_000
    static let connectGiveUpNanoseconds: UInt64 = 10_000_000_000
    /// Testing knobs read by endpoints: one data frame in N, at random, is dropped on its way
    /// out, sent twice, or sent after the frames that follow it.
    public static let dropEnvironment = "MYRIXEN_WIRE_DROP"
    public static let duplicateEnvironment = "MYRIXEN_WIRE_DUP"
    public static let reorderEnvironment = "MYRIXEN_WIRE_REORDER"
}

/// Layout of an endpoint-to-endpoint frame: this header, then a record laid out exactly as in a
/// ring (`RecordLayout`, from its 32-byte header on; stamp and cell count unused), then data.
enum FrameLayout {
    static let magicOffset = 0          // u32 "MXWF"
    static let typeOffset = 4           // u8 FrameType
    static let versionOffset = 5        // u8
    static let flagsOffset = 6          // u8 FrameFlags
    static let sourceSessionOffset = 8  // u32: the sending endpoint's session
    static let targetSessionOffset = 12 // u32: the receiving endpoint's session
    static let sequenceOffset = 16      // u32: data frames only
    static let ackOffset = 20           // u32: the next sequence number the sender expects back
    static let headerSize = 24
    static let magic: UInt32 = 0x4657_584D // "MXWF"
    static let version: UInt8 = 2
}

enum FrameFlags {
    /// The sender of this frame saw a gap (a frame after a lost one): resend from its ack now,
    /// without waiting for the timer.
    static let gap: UInt8 = 1
    /// The sender can send no more until acked: ack at once.
    static let ackNow: UInt8 = 2
    /// The record goes on in the next frame (a record longer than one frame: each frame after
    /// the first carries only the record's next bytes).
    static let continued: UInt8 = 4
}

enum FrameType: UInt8 {
    case data = 1
    case ack = 2
}

/// Backend-to-backend messages on the boards' port: magic "MXWC", type, then fields.
enum BoardMessage: UInt8 {
    /// id u32, source NIC u64, source endpoint u16, source session u32, source port u16,
    /// source receive buffer u32, source frame limit u32, target NIC u64, target endpoint u16,
    /// key u32
    case connectRequest = 1
    /// id u32, error code string (empty: accepted), message string, target session u32,
    /// target port u16, target receive buffer u32, target frame limit u32
    case connectReply = 2
    /// An endpoint closed or died: NIC u64, endpoint u16, session u32, then the peer it had on
    /// the receiving host: NIC u64, endpoint u16, session u32
    case endpointClosed = 3
    /// "This host's backend is alive" (no fields), to every host it has pairs with.
    case heartbeat = 4
    /// The receipt of an endpointClosed: the same six fields. Notices are resent every 250 ms
    /// until receipted, for up to the host timeout.
    case closedReceipt = 5

    static let magic: UInt32 = 0x4357_584D // "MXWC"
}

extension NICAddressing {
    /// A board on a wire is named after its address: `02:a:b:c:d:board`, as a locally
    /// administered MAC address.
    public static func nicID(ipv4: UInt32, board: Int) -> UInt64 {
        (0x02 << 40) | (UInt64(ipv4) << 8) | UInt64(board & 0xFF)
    }

    /// The wire address and board a NIC id names (meaningful for boards on a wire).
    public static func wireAddress(of nicID: UInt64) -> (ipv4: UInt32, board: Int) {
        (UInt32(truncatingIfNeeded: nicID >> 8), Int(nicID & 0xFF))
    }

    public static func formatIPv4(_ ip: UInt32) -> String {
        "\(ip >> 24).\(ip >> 16 & 0xFF).\(ip >> 8 & 0xFF).\(ip & 0xFF)"
    }
}
