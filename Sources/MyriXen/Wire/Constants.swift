/// The constants of the emulated Myri-10G board and of MX, in one place. Frontend, backend,
/// rings and tools import these; none redefines a number. Values follow MX / Open-MX defaults
/// (see docs/myrixen.md).
public enum MXLimits {
    /// Endpoints a board offers by default (the wire format allows 256).
    public static let endpointsPerBoard = 32
    public static let maxEndpointsPerBoard = 256
    /// Boards a host may carry.
    public static let maxBoards = 32
    /// Peers an endpoint may connect to by default (the wire format allows `peerSpace`).
    public static let maxPeers = 1024
    /// Peers the wire format allows an endpoint.
    public static let peerSpace = 65_536
    /// Ranks one host can hold: an endpoint each, on at most `maxBoards` boards of
    /// `maxEndpointsPerBoard` (8,192). swiftrun refuses more.
    public static let maxRanksPerHost = maxBoards * maxEndpointsPerBoard
    /// Ranks one job can have (65,536): every rank a peer the wire format allows. swiftrun
    /// refuses more, and a hostfile of more hosts than that.
    public static let maxRanksPerJob = peerSpace
    /// Scatter/gather segments per operation.
    public static let maxSegments = 256
    /// Largest segment endpoints of one host may share (`MXEndpoint.shareSegment`), and how
    /// many one endpoint may take part in.
    public static let maxSharedSegmentBytes = 64 << 20
    public static let sharedSegmentsPerEndpoint = 16
    /// Registered regions per endpoint (8-bit region ids).
    public static let regionsPerEndpoint = 256
    /// Largest tiny message: data travels inside the send command.
    public static let tinyMax = 32
    /// Largest small message (PIO send max).
    public static let smallMax = 128
    /// Rendezvous threshold between endpoints of one host. MX uses 4 KiB; here 8 KiB goes
    /// faster eager (one copy each side, 0.57 µs) than by rendezvous (0.85 µs), and 16 KiB
    /// faster by rendezvous in pieces (docs/performance.md).
    public static let rendezvousThresholdLocal = 8192
    /// Rendezvous threshold between hosts: MX's 32 KiB is two trips too early here, where a
    /// message of several frames goes in runs of one system call each way, and a matched one
    /// streams into its receive: eager, 128 KiB takes 28 µs where the rendezvous took 40, and
    /// 256 KiB 51 against 67 (docs/performance.md).
    public static let rendezvousThresholdRemote = 262144
    /// Myri-10G line speed, Gbit/s, full duplex.
    public static let lineSpeedGbps = 10
    /// Control connections one process may hold to its backend (one per context and one per
    /// endpoint: twice a full board's endpoints). More are refused (`tooManyConnections`).
    public static let maxConnectionsPerProcess = 512
    /// Control connections a backend serves in all by default (`myrback --max-connections`):
    /// two a rank (its context's and its endpoint's) for the most ranks a host takes, and one
    /// process's share beside them (tools, a rank's extra contexts).
    public static let maxConnections = 2 * maxRanksPerHost + maxConnectionsPerProcess
    /// The MX API level these semantics follow.
    public static let apiVersion = 0x301
}

/// Where things live by default.
public enum MXDefaults {
    /// Environment variable naming the backend's socket.
    public static let socketEnvironment = "MYRIXEN_SOCKET"
    /// Environment variable naming the myrback executable to start on demand.
    public static let backendPathEnvironment = "MYRBACK_PATH"
    /// Environment variable overriding the local rendezvous threshold (bytes).
    public static let thresholdEnvironment = "MYRIXEN_RNDV_THRESHOLD"
    /// Environment variable choosing how rendezvous messages of one host move (`MXLocalPath`).
    public static let localPathEnvironment = "MYRIXEN_LOCAL_PATH"
    /// Environment variable overriding a pair ring's size (KiB).
    public static let ringSizeEnvironment = "MYRIXEN_RING_KB"
    /// Environment variable in which swiftrun tells its ranks how many CPUs the job may use on
    /// their host (its own affinity, before it binds each rank to a share of it).
    public static let hostCPUsEnvironment = "MYRIXEN_HOST_CPUS"
    /// Seconds an on-demand backend lingers with no frontend before it exits.
    public static let onDemandIdleSeconds = 10
}
