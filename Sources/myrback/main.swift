// myrback: the MyriXen backend (the emulated driver domain of one host).
import ArgumentParser
import MyriXen
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) var stopFlag: sig_atomic_t = 0

struct Myrback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "myrback",
        abstract: "The MyriXen backend: owns this host's emulated Myri-10G board(s) and serves frontends.",
        discussion: """
        Frontends start a backend on demand; run one by hand with --foreground to watch it or to \
        serve as a service. A missing socket directory is created private to the user (mode \
        0700) and removed at exit; an existing one must be a real directory of the user's that \
        nobody else can write to, and is left as it is.
        """)

    @Option(name: .long, help: "Unix socket to listen on (default: $MYRIXEN_SOCKET or /tmp/myrixen-<uid>/myrback.sock).")
    var socket: String?

    @Option(name: .long, help: "Host name boards are named after (default: this host's name).")
    var hostname: String?

    @Option(name: .long, help: "Number of emulated boards (1-\(MXLimits.maxBoards)).")
    var boards: Int = 1

    @Option(name: .long, help: "Endpoints per board (1-\(MXLimits.maxEndpointsPerBoard)).")
    var endpoints: Int = MXLimits.endpointsPerBoard

    @Option(name: .long, help: "Data size of each pair ring in KiB (power of two, 16-16384; default $MYRIXEN_RING_KB or 64).")
    var ringKb: Int?

    @Option(name: .long, help: "This host's IPv4 address on the wire to other hosts, 'auto' (the first interface that is up and not loopback, if any, and if its board port is free) or 'none' (default: $MYRIXEN_WIRE or none). Boards are then named after it; every host's backend uses UDP port \(MXWire.port) on it.")
    var wire: String?

    @Option(name: .long, help: "Seconds another host on the wire may stay silent before the pairs with it end (default: $MYRIXEN_HOST_TIMEOUT or \(MXWire.defaultHostTimeoutSeconds)).")
    var hostTimeout: Int?

    @Option(name: .long, help: "Take the wire's MTU as this, where a path between hosts has a smaller one than this host's interface (576-65535; default: $MYRIXEN_WIRE_MTU or the interface's). Frames are never larger than the MTU allows.")
    var wireMtu: Int?

    func wireMTU() throws -> Int? {
        if let m = wireMtu { return m }
        guard let p = getenv(MXWire.mtuEnvironment) else { return nil }
        guard let m = Int(String(cString: p)) else {
            throw ValidationError("\(MXWire.mtuEnvironment)='\(String(cString: p))' is not a number of bytes")
        }
        return m
    }

    /// The host timeout: the option, else the environment's, else the default.
    func hostTimeoutSeconds() throws -> Int {
        if let t = hostTimeout { return t }
        guard let p = getenv(MXWire.hostTimeoutEnvironment) else { return MXWire.defaultHostTimeoutSeconds }
        guard let t = Int(String(cString: p)) else {
            throw ValidationError("\(MXWire.hostTimeoutEnvironment)='\(String(cString: p))' is not a number of seconds")
        }
        return t
    }

    @Option(name: .long, help: "Control connections served at once (1-\(MXLimits.maxConnections), default \(MXLimits.maxConnections)); one process may hold \(MXLimits.maxConnectionsPerProcess). More are refused with an error that says so.")
    var maxConnections: Int = MXLimits.maxConnections

    @Option(name: .long, help: "Exit after this many seconds without frontends (default: never).")
    var idleExit: Int?

    @Flag(name: .long, help: "At exit remove the socket's directory if it is empty, though it existed before (a launcher's private job directory). Without it only a directory myrback created is removed.")
    var removeEmptyDirectory = false

    @Option(name: .long, help: "The launcher that started this backend (it starts it tied with SIGURG): if it is gone by the time the backend runs, or goes later, the backend stops and cleans up.")
    var launcherPid: Int32?

    @Option(name: .long, help: "Serve the listening socket on this inherited descriptor, already bound to --socket (a launcher's socket activation: its ranks connect while the backend starts).")
    var listenFd: Int32?

    @Flag(name: .long, help: "Stay in the foreground (the default unless --daemonize).")
    var foreground = false

    @Flag(name: .long, help: "Detach into the background (what on-demand starts use).")
    var daemonize = false

    @Flag(name: .shortAndLong, help: "Log connections and endpoint changes.")
    var verbose = false

    func validate() throws {
        if foreground && daemonize { throw ValidationError("--foreground and --daemonize exclude each other") }
        if let h = hostname, h.isEmpty || h.utf8.count > 255 || h.unicodeScalars.contains(where: { $0.value <= 32 || $0 == "/" || $0.value == 127 }) {
            throw ValidationError("--hostname '\(h.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? "?" : String($0) }.joined())' is not a host name: give 1 to 255 characters without spaces, control characters or '/'")
        }
        if maxConnections < 1 || maxConnections > MXLimits.maxConnections {
            throw ValidationError("--max-connections must be 1 to \(MXLimits.maxConnections), not \(maxConnections)")
        }
        if let i = idleExit, i < 1 { throw ValidationError("--idle-exit must be at least 1 second, not \(i)") }
        if let fd = listenFd {
            guard socket != nil else { throw ValidationError("--listen-fd needs --socket, the path the descriptor is bound to") }
            guard fd >= 0, !daemonize else { throw ValidationError("--listen-fd takes a descriptor number >= 0, and excludes --daemonize") }
        }
        if let m = try wireMTU(), m < 576 || m > 65_535 {
            throw ValidationError("--wire-mtu (or \(MXWire.mtuEnvironment)) must be 576 to 65535 bytes, not \(m)")
        }
        let t = try hostTimeoutSeconds()
        if t < 1 || t > 86_400 {
            throw ValidationError("--host-timeout (or \(MXWire.hostTimeoutEnvironment)) must be 1 to 86400 seconds, not \(t)")
        }
    }

    func run() throws {
        // Told to stop while still starting (a launcher killed right after starting us), the
        // backend still cleans up: the handlers come first, and the loop checks the flag first.
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM) { _ in stopFlag = 1 }
        signal(SIGINT) { _ in stopFlag = 1 }
        signal(SIGURG) { _ in stopFlag = 1 }
        // A launcher ties its backend to itself with SIGURG, whose default is to be ignored: one
        // that came before the handler above would have been lost, so look once it is in place.
        if let p = launcherPid, getppid() != p { stopFlag = 1 }
        // A daemon keeps nothing of its spawner but stdio (which it moves to /dev/null).
        if daemonize { BackendLocation.closeInheritedDescriptors() }
        var config = Backend.Configuration(
            socketPath: socket ?? BackendLocation.defaultSocketPath(),
            hostname: hostname ?? BackendLocation.localHostName())
        config.boards = boards
        config.endpointsPerBoard = endpoints
        if let kb = ringKb ?? getenv(MXDefaults.ringSizeEnvironment).flatMap({ Int(String(cString: $0)) }) {
            config.ringDataBytes = kb * 1024
        }
        config.idleExitSeconds = idleExit
        config.maxConnections = maxConnections
        config.removeEmptyDirectory = removeEmptyDirectory
        config.inheritedListener = listenFd ?? -1
        config.hostTimeoutSeconds = try hostTimeoutSeconds()
        config.wireMTU = try wireMTU()
        config.verbose = verbose
        let wireSpec = wire ?? getenv(MXWire.environment).map { String(cString: $0) } ?? "none"
        config.wire = try Backend.wireAddress(wireSpec)
        var made: Result<Backend, MXError> = Result { () throws(MXError) in try Backend(config) }
        if case let .failure(error) = made, wireSpec == "auto", config.wire != nil {
            // `auto` is a wish: where the board port is taken (several emulated hosts sharing
            // one network stack), this host serves its own endpoints only.
            if verbose { print("myrback: no wire: \(error.message)") }
            config.wire = nil
            made = Result { () throws(MXError) in try Backend(config) }
        }
        let backend = try made.get()
        if daemonize {
            do { try BackendLocation.daemonize() } catch { throw error }
        }
        if verbose {
            let wired = config.wire.map { ", wire \(NICAddressing.formatIPv4($0)):\(MXWire.port)" } ?? ""
            print("myrback: serving \(config.boards) board(s) of \(config.hostname) at \(config.socketPath)\(wired) (pid \(getpid()))")
        }
        backend.run { stopFlag != 0 }
    }
}

Myrback.main()
