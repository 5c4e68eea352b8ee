// The backend as a command: myrback's options, their checks, and serving until told to stop.
// myrback runs it from its own executable; swiftrun runs it in a child it forks, so a job's
// private backend costs no exec (docs/performance.md, "Launch").
#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// What myrback's command line says. Parsed by hand: a backend starts with every job, and
/// swift-argument-parser brought FoundationEssentials into the binary and a reflection-driven
/// parse that cost more CPU at each start than serving the job's first frontends.
public struct BackendOptions: Sendable {
    public var socket: String?
    public var hostname: String?
    public var boards = 1
    public var endpoints = MXLimits.endpointsPerBoard
    public var ringKb: Int?
    public var wire: String?
    public var hostTimeout: Int?
    public var wireMtu: Int?
    public var maxConnections = MXLimits.maxConnections
    public var idleExit: Int?
    public var removeEmptyDirectory = false
    public var launcherPid: Int32?
    public var listenFd: Int32?
    public var foreground = false
    public var daemonize = false
    public var verbose = false
    public var help = false

    public init() {}

    /// A usage error: what is wrong with the command line, and the fix.
    public struct UsageError: Error {
        public let message: String
        public init(_ message: String) { self.message = message }
    }

    /// One option: its long name, the placeholder of its value (nil for a flag), its help, how
    /// it sets the options, and what it says of them on a command line (nil: nothing, as at
    /// the default; "" for a flag that is set).
    struct Spec: Sendable {
        let name: String
        let value: String?
        let help: String
        let show: @Sendable (BackendOptions) -> String?
        let apply: @Sendable (inout BackendOptions, String) throws(UsageError) -> Void
    }

    static let specs: [Spec] = [
        Spec(name: "socket", value: "path", help: "Unix socket to listen on (default: $\(MXDefaults.socketEnvironment) or /tmp/myrixen-<uid>/myrback.sock).", show: { $0.socket }) { o, v throws(UsageError) in o.socket = v },
        Spec(name: "hostname", value: "name", help: "Host name boards are named after (default: this host's name).", show: { $0.hostname }) { o, v throws(UsageError) in o.hostname = v },
        Spec(name: "boards", value: "n", help: "Number of emulated boards (1-\(MXLimits.maxBoards)).", show: { $0.boards == 1 ? nil : String($0.boards) }) { o, v throws(UsageError) in o.boards = try number(v, "boards") },
        Spec(name: "endpoints", value: "n", help: "Endpoints per board (1-\(MXLimits.maxEndpointsPerBoard)).", show: { $0.endpoints == MXLimits.endpointsPerBoard ? nil : String($0.endpoints) }) { o, v throws(UsageError) in o.endpoints = try number(v, "endpoints") },
        Spec(name: "ring-kb", value: "kib", help: "Data size of each pair ring in KiB (power of two, 16-16384; default $\(MXDefaults.ringSizeEnvironment) or 64).", show: { $0.ringKb.map(String.init) }) { o, v throws(UsageError) in o.ringKb = try number(v, "ring-kb") },
        Spec(name: "wire", value: "address", help: "This host's IPv4 address on the wire to other hosts, 'auto' (the first interface that is up and not loopback, if any, and if its board port is free) or 'none' (default: $\(MXWire.environment) or none). Boards are then named after it; every host's backend uses UDP port \(MXWire.port) on it.", show: { $0.wire }) { o, v throws(UsageError) in o.wire = v },
        Spec(name: "host-timeout", value: "seconds", help: "Seconds another host on the wire may stay silent before the pairs with it end (default: $\(MXWire.hostTimeoutEnvironment) or \(MXWire.defaultHostTimeoutSeconds)).", show: { $0.hostTimeout.map(String.init) }) { o, v throws(UsageError) in o.hostTimeout = try number(v, "host-timeout") },
        Spec(name: "wire-mtu", value: "bytes", help: "Take the wire's MTU as this, where a path between hosts has a smaller one than this host's interface (576-65535; default: $\(MXWire.mtuEnvironment) or the interface's). Frames are never larger than the MTU allows.", show: { $0.wireMtu.map(String.init) }) { o, v throws(UsageError) in o.wireMtu = try number(v, "wire-mtu") },
        Spec(name: "max-connections", value: "n", help: "Control connections served at once (1-\(MXLimits.maxConnections), default \(MXLimits.maxConnections)); one process may hold \(MXLimits.maxConnectionsPerProcess). More are refused with an error that says so.", show: { $0.maxConnections == MXLimits.maxConnections ? nil : String($0.maxConnections) }) { o, v throws(UsageError) in o.maxConnections = try number(v, "max-connections") },
        Spec(name: "idle-exit", value: "seconds", help: "Exit after this many seconds without frontends (default: never).", show: { $0.idleExit.map(String.init) }) { o, v throws(UsageError) in o.idleExit = try number(v, "idle-exit") },
        Spec(name: "remove-empty-directory", value: nil, help: "At exit remove the socket's directory if it is empty, though it existed before (a launcher's private job directory). Without it only a directory myrback created is removed.", show: { $0.removeEmptyDirectory ? "" : nil }) { o, _ throws(UsageError) in o.removeEmptyDirectory = true },
        Spec(name: "launcher-pid", value: "pid", help: "The launcher that started this backend (it starts it tied with SIGURG): if it is gone by the time the backend runs, or goes later, the backend stops and cleans up.", show: { $0.launcherPid.map(String.init) }) { o, v throws(UsageError) in o.launcherPid = Int32(try number(v, "launcher-pid")) },
        Spec(name: "listen-fd", value: "fd", help: "Serve the listening socket on this inherited descriptor, already bound to --socket (a launcher's socket activation: its ranks connect while the backend starts).", show: { $0.listenFd.map(String.init) }) { o, v throws(UsageError) in o.listenFd = Int32(try number(v, "listen-fd")) },
        Spec(name: "foreground", value: nil, help: "Stay in the foreground (the default unless --daemonize).", show: { $0.foreground ? "" : nil }) { o, _ throws(UsageError) in o.foreground = true },
        Spec(name: "daemonize", value: nil, help: "Detach into the background (what on-demand starts use).", show: { $0.daemonize ? "" : nil }) { o, _ throws(UsageError) in o.daemonize = true },
        Spec(name: "verbose", value: nil, help: "Log connections and endpoint changes (also -v).", show: { $0.verbose ? "" : nil }) { o, _ throws(UsageError) in o.verbose = true },
        Spec(name: "help", value: nil, help: "Show this help (also -h).", show: { _ in nil }) { o, _ throws(UsageError) in o.help = true },
    ]

    /// `s` with control characters shown as '?', for quoting in a message.
    static func shown(_ s: String) -> String {
        s.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? "?" : String($0) }.joined()
    }

    static func number(_ v: String, _ name: String) throws(UsageError) -> Int {
        guard let n = Int(v) else { throw UsageError("--\(name) takes a whole number, not '\(shown(v))'") }
        guard n >= 0, n <= Int(Int32.max) else { throw UsageError("--\(name) \(n) is out of range (0 to \(Int32.max))") }
        return n
    }

    /// Parses `--name value`, `--name=value`, flags, `-v` and `-h`.
    public static func parse(_ arguments: some Collection<String>) throws(UsageError) -> BackendOptions {
        var o = BackendOptions()
        var rest = arguments[...]
        while let arg = rest.popFirst() {
            if arg == "-v" { o.verbose = true; continue }
            if arg == "-h" { o.help = true; continue }
            guard arg.hasPrefix("--"), arg.count > 2 else {
                throw UsageError("unexpected argument '\(shown(arg))': myrback takes options only (see myrback --help)")
            }
            let body = arg.dropFirst(2)
            let name = body.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            guard let spec = specs.first(where: { $0.name == name }) else {
                throw UsageError("unknown option '--\(shown(name))'; the options are \(specs.map { "--" + $0.name }.joined(separator: ", "))")
            }
            let value: String
            if let eq = body.firstIndex(of: "=") {
                guard spec.value != nil else { throw UsageError("--\(name) is a flag and takes no value") }
                value = String(body[body.index(after: eq)...])
            } else if spec.value != nil {
                guard let next = rest.popFirst() else { throw UsageError("--\(name) needs a value: --\(name) <\(spec.value!)>") }
                value = next
            } else {
                value = ""
            }
            try spec.apply(&o, value)
        }
        return o
    }

    /// These options as myrback's arguments (those that differ from the defaults).
    public var commandLine: [String] {
        Self.specs.flatMap { spec -> [String] in
            guard let v = spec.show(self) else { return [] }
            return spec.value == nil ? ["--" + spec.name] : ["--" + spec.name, v]
        }
    }

    public static var helpText: String {
        var s = """
        myrback: the MyriXen backend: owns this host's emulated Myri-10G board(s) and
        serves frontends.

        Frontends start a backend on demand; run one by hand with --foreground to watch
        it or to serve as a service. A missing socket directory is created private to
        the user (mode 0700) and removed at exit; an existing one must be a real
        directory of the user's that nobody else can write to, and is left as it is.

        USAGE: myrback [options]

        OPTIONS:

        """
        for spec in specs {
            let left = "  --\(spec.name)" + (spec.value.map { " <\($0)>" } ?? "")
            s += left + "\n" + wrapped(spec.help, indent: 6) + "\n"
        }
        return s
    }

    /// `text` in lines of at most 80 columns, each indented by `indent`.
    static func wrapped(_ text: String, indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && pad.count + line.count + 1 + word.count > 80 {
                lines.append(pad + line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { lines.append(pad + line) }
        return lines.joined(separator: "\n")
    }

    public func wireMTU() throws(UsageError) -> Int? {
        if let m = wireMtu { return m }
        guard let p = getenv(MXWire.mtuEnvironment) else { return nil }
        guard let m = Int(String(cString: p)) else {
            throw UsageError("\(MXWire.mtuEnvironment)='\(Self.shown(String(cString: p)))' is not a number of bytes")
        }
        return m
    }

    /// The host timeout: the option, else the environment's, else the default.
    public func hostTimeoutSeconds() throws(UsageError) -> Int {
        if let t = hostTimeout { return t }
        guard let p = getenv(MXWire.hostTimeoutEnvironment) else { return MXWire.defaultHostTimeoutSeconds }
        guard let t = Int(String(cString: p)) else {
            throw UsageError("\(MXWire.hostTimeoutEnvironment)='\(Self.shown(String(cString: p)))' is not a number of seconds")
        }
        return t
    }

    public func validate() throws(UsageError) {
        if foreground && daemonize { throw UsageError("--foreground and --daemonize exclude each other") }
        if let h = hostname, h.isEmpty || h.utf8.count > 255 || h.unicodeScalars.contains(where: { $0.value <= 32 || $0 == "/" || $0.value == 127 }) {
            throw UsageError("--hostname '\(Self.shown(h))' is not a host name: give 1 to 255 characters without spaces, control characters or '/'")
        }
        if maxConnections < 1 || maxConnections > MXLimits.maxConnections {
            throw UsageError("--max-connections must be 1 to \(MXLimits.maxConnections), not \(maxConnections)")
        }
        if let i = idleExit, i < 1 { throw UsageError("--idle-exit must be at least 1 second, not \(i)") }
        if let fd = listenFd {
            guard socket != nil else { throw UsageError("--listen-fd needs --socket, the path the descriptor is bound to") }
            guard fd >= 0, !daemonize else { throw UsageError("--listen-fd takes a descriptor number >= 0, and excludes --daemonize") }
        }
        if let m = try wireMTU(), m < 576 || m > 65_535 {
            throw UsageError("--wire-mtu (or \(MXWire.mtuEnvironment)) must be 576 to 65535 bytes, not \(m)")
        }
        let t = try hostTimeoutSeconds()
        if t < 1 || t > 86_400 {
            throw UsageError("--host-timeout (or \(MXWire.hostTimeoutEnvironment)) must be 1 to 86400 seconds, not \(t)")
        }
    }
}

/// Set by the stop signals' handlers (a handler can reach only a global).
nonisolated(unsafe) private var stopFlag: sig_atomic_t = 0

/// The backend as a command: myrback's `main`, and the same backend in a child of a launcher.
public enum BackendCommand {
    /// myrback's whole run: parse, check, serve. Returns the exit code: 0, 64 (EX_USAGE) for
    /// a bad command line, 1 when the backend cannot serve.
    public static func main(_ arguments: some Collection<String>) -> Int32 {
        let options: BackendOptions
        do throws(BackendOptions.UsageError) {
            options = try BackendOptions.parse(arguments)
            if options.help {
                print(BackendOptions.helpText, terminator: "")
                return 0
            }
            try options.validate()
        } catch {
            complain("Error: \(error.message)\nUsage: myrback [options]\n  See 'myrback --help' for more information.")
            return 64
        }
        do {
            try serve(options)
            return 0
        } catch {
            complain("Error: \(error)")
            return 1
        }
    }

    /// Serves until SIGTERM, SIGINT or SIGURG (a launcher's tie), or idle for `--idle-exit`.
    public static func serve(_ o: BackendOptions) throws {
        // Told to stop while still starting (a launcher killed right after starting us), the
        // backend still cleans up: the handlers come first, and the loop checks the flag first.
        signal(SIGPIPE, SIG_IGN)
        signal(SIGTERM) { _ in stopFlag = 1 }
        signal(SIGINT) { _ in stopFlag = 1 }
        signal(SIGURG) { _ in stopFlag = 1 }
        // A launcher ties its backend to itself with SIGURG, whose default is to be ignored: one
        // that came before the handler above would have been lost, so look once it is in place.
        if let p = o.launcherPid, getppid() != p { stopFlag = 1 }
        // A daemon keeps nothing of its spawner but stdio (which it moves to /dev/null).
        if o.daemonize { BackendLocation.closeInheritedDescriptors() }
        var config = Backend.Configuration(
            socketPath: o.socket ?? BackendLocation.defaultSocketPath(),
            hostname: o.hostname ?? BackendLocation.localHostName())
        config.boards = o.boards
        config.endpointsPerBoard = o.endpoints
        if let kb = o.ringKb ?? getenv(MXDefaults.ringSizeEnvironment).flatMap({ Int(String(cString: $0)) }) {
            config.ringDataBytes = kb * 1024
        }
        config.idleExitSeconds = o.idleExit
        config.maxConnections = o.maxConnections
        config.removeEmptyDirectory = o.removeEmptyDirectory
        config.inheritedListener = o.listenFd ?? -1
        config.hostTimeoutSeconds = try o.hostTimeoutSeconds()
        config.wireMTU = try o.wireMTU()
        config.verbose = o.verbose
        let wireSpec = o.wire ?? getenv(MXWire.environment).map { String(cString: $0) } ?? "none"
        config.wire = try Backend.wireAddress(wireSpec)
        var made: Result<Backend, MXError> = Result { () throws(MXError) in try Backend(config) }
        if case let .failure(error) = made, wireSpec == "auto", config.wire != nil {
            // `auto` is a wish: where the board port is taken (several emulated hosts sharing
            // one network stack), this host serves its own endpoints only.
            if o.verbose { print("myrback: no wire: \(error.message)") }
            config.wire = nil
            made = Result { () throws(MXError) in try Backend(config) }
        }
        let backend = try made.get()
        if o.daemonize { try BackendLocation.daemonize() }
        if o.verbose {
            let wired = config.wire.map { ", wire \(NICAddressing.formatIPv4($0)):\(MXWire.port)" } ?? ""
            print("myrback: serving \(config.boards) board(s) of \(config.hostname) at \(config.socketPath)\(wired) (pid \(getpid()))")
        }
        backend.run { stopFlag != 0 }
    }

    /// Starts a backend in a child of this process, a copy of it (fork, no exec): a launcher's
    /// private backend for its job. The child is tied to this process (SIGURG when it ends, as
    /// `--launcher-pid` says), holds `listener` as descriptor 3 (`options.listenFd` must say
    /// 3) and nothing else but stdio, is named myrback, and serves until stopped. Exec'ing
    /// myrback instead cost more CPU than the rest of a small job's start on 2 cores: loading
    /// and relocating a second Swift program while the ranks load theirs.
    public static func fork(_ options: BackendOptions, listener: Int32) throws(MXError) -> ChildProcess {
        precondition(options.listenFd == 3 && !options.daemonize, "a forked backend serves descriptor 3 in the foreground")
        let pid = cmx_fork_tied(SIGURG, listener, 3, "myrback")
        guard pid >= 0 else { throw systemError("fork of the backend", errno) }
        if pid > 0 { return ChildProcess(pid: pid) }
        // What ps and /proc show: the backend, as the myrback command it stands for.
        _ = cmx_set_process_title((["myrback"] + options.commandLine).joined(separator: " "))
        var code: Int32 = 0
        do {
            try serve(options)
        } catch {
            complain("myrback: \(error)")
            code = 1
        }
        fflush(nil)
        _exit(code) // no atexit handler or buffer of the launcher's runs twice
    }

    /// A line on stderr.
    static func complain(_ s: String) {
        let line = Array((s + "\n").utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
