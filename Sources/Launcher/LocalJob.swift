#if canImport(Glibc)
import Glibc
#endif
import CMyriXen
import MyriXen
import PMI

/// A job: the ranks of this host are this process's children (fork), in one process group,
/// bound, with PMI-1 served over a socketpair each (PMI_FD) or TCP (PMI_PORT), their output
/// forwarded line by line, stdin to rank 0, a backend per host, and the whole job ended within
/// a second when anything fails. Every other host (emulated VM, real VM, Slurm node) gets an
/// agent (`Agents.swift`), which runs its share with this same class in its agent role.
public final class LocalJob {
    /// One host of the job and how it is reached.
    public struct HostLaunch: Sendable {
        public var name: String
        /// nil: this host (fork). Else the command that reaches the host (`ssh ... HOST`,
        /// `ip netns exec VM`, srun); the agent program and its arguments follow.
        public var agent: [String]?
        /// The agent is started by one `srun` step for all such hosts (`agent` is the srun).
        public var slurm = false
        /// The agent calls back over a Unix socket in the job's directory (an emulated VM
        /// shares this machine's files but has no route to its network), else over TCP.
        public var callsBackLocally = false
        /// What its agent binds ranks to (nil: its default, core when they fit).
        public var bindTo: BindTo?

        public init(name: String, agent: [String]? = nil, slurm: Bool = false, callsBackLocally: Bool = false, bindTo: BindTo? = nil) {
            self.name = name
            self.agent = agent
            self.slurm = slurm
            self.callsBackLocally = callsBackLocally
            self.bindTo = bindTo
        }
    }

    public struct Plan {
        public var apps: [AppSpec]
        public var placements: [RankPlacement]
        public var bindings: [Binding]
        public var hosts: [HostLaunch]
        public var environment: [(name: String, value: String?)]
        public var tagOutput: Bool
        public var outputDirectory: String?
        public var timeoutSeconds: Int?
        public var reportBindings: Bool
        public var verbose: Bool
        /// PMI_PORT + PMI_ID (TCP on 127.0.0.1) instead of PMI_FD.
        public var pmiPort = false
        /// How ranks take a host's cores (agents bind with it too).
        public var mapBy: MapBy = .slot
        /// The myrback executable beside swiftrun, if any: ranks get it as MYRBACK_PATH for the
        /// backends they start on demand (the job's own backends are forked, not exec'd).
        public var backendExecutable: String?

        public init(apps: [AppSpec], placements: [RankPlacement], bindings: [Binding], hosts: [HostLaunch],
                    environment: [(name: String, value: String?)], tagOutput: Bool, outputDirectory: String?,
                    timeoutSeconds: Int?, reportBindings: Bool, verbose: Bool, backendExecutable: String?) {
            self.apps = apps; self.placements = placements; self.bindings = bindings; self.hosts = hosts
            self.environment = environment; self.tagOutput = tagOutput; self.outputDirectory = outputDirectory
            self.timeoutSeconds = timeoutSeconds; self.reportBindings = reportBindings; self.verbose = verbose
            self.backendExecutable = backendExecutable
        }
    }

    struct Rank {
        let placement: RankPlacement
        var pid: Int32 = -1
        var pmi: PMILineChannel?
        var out: LineForwarder?
        var err: LineForwarder?
        var outcome: ChildProcess.Outcome?
        var finalized = false
        /// It sent a PMI message: from then on it must finalize before it ends.
        var spokePMI = false
        /// Controller: the rank runs on a host served by an agent.
        var remote = false
    }

    /// What this process is to the job: swiftrun itself, or the agent of one host that starts
    /// that host's ranks and relays their PMI, output and exits to swiftrun.
    enum Role {
        case controller
        case agent(upstream: PMILineChannel)
    }

    /// Controller: one agent per host reached through one.
    struct AgentLink {
        var process: ChildProcess?
        var channel: PMILineChannel?
        var done = false
        var lost = false
        /// The launcher's and agent's stderr: kept until the agent calls back (to explain a
        /// host that cannot be reached), passed on after.
        var stderr: Int32 = -1
        var stderrText: [UInt8] = []
    }

    enum Ending: Equatable {
        case failed(code: Int32)
        case interrupted(signal: Int32)
        case timedOut
    }

    let plan: Plan
    var role: Role = .controller
    var ranks: [Rank] = []
    /// Global rank -> index in `ranks` (the same number, but for an agent's share).
    var indexOfRank: [Int: Int] = [:]
    var agents: [Int: AgentLink] = [:]
    var agentListener: Int32 = -1
    var agentUnixListener: Int32 = -1
    var agentSocketPath: String?
    /// Agent: its host's share of PMI (answers locally, one barrier message per host).
    var proxy: PMIProxy?
    var secret = ""
    var unauthenticated: [PMILineChannel] = []
    /// When each not-yet-identified connection came (by descriptor).
    var connectedAt: [Int32: UInt64] = [:]
    var server: PMIServer
    var pgid: Int32 = 0
    var signalFD: Int32 = -1
    var ending: Ending?
    var killAt: UInt64?
    var giveUpAt: UInt64?
    var stdinBuffer: [UInt8] = []
    /// PMI_PORT mode: the listening socket, and connections that have not said who they are.
    var pmiListener: Int32 = -1
    /// PMI_ID = this + rank: an integer as MPICH wants, but not guessable from the rank alone.
    lazy var pmiIDBase: Int = Int(LocalJob.randomUInt32() % 1_000_000_000) + 1_000
    var unidentified: [PMILineChannel] = []
    var stdinOpen = true
    var stdinEndSent = false
    var rank0Stdin: Int32 = -1
    /// The backend of each host that has ranks, and its socket.
    var backends: [Int: (process: ChildProcess?, socket: String)] = [:]
    var jobDirectory: String?
    /// Agent of an emulated VM: the controller's job directory (its callback socket's), which
    /// this agent removes if the controller vanished without doing so.
    var controllerDirectory: String?
    /// Agent: swiftrun went away (the connection closed, or the signal it dies with came).
    var upstreamLost = false
    let start = monotonicNanoseconds()
    /// How long ranks get between SIGTERM and SIGKILL.
    static let graceNanoseconds: UInt64 = 500_000_000
    public static let timeoutExitCode: Int32 = 124
    /// Signals swiftrun catches (children ended; what it forwards to the ranks).
    static let handledSignals = [SIGCHLD, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM]

    /// `size`: the whole job's ranks (an agent's plan holds only its host's share).
    public init(_ plan: Plan, size: Int? = nil) {
        self.plan = plan
        let size = size ?? plan.placements.count
        server = PMIServer(size: size, kvsname: "kvs_\(getpid())_0", appnum: plan.placements.count == size ? plan.placements.map(\.app) : Array(repeating: 0, count: size),
                           processMapping: Mapper.processMapping(plan.placements))
    }

    /// A line of its own on stderr (binding reports).
    func report(_ s: String) {
        let line = s + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    /// A line of swiftrun's on stderr; what it quotes from ranks, agents and files is escaped.
    func say(_ s: String) {
        LineForwarder.writeAll(Array("swiftrun: \(Visible.text(s))\n".utf8), to: 2)
    }

    /// Runs the job to its end; returns swiftrun's exit code.
    public func run() throws(LaunchError) -> Int32 {
        cmx_raise_fd_limit() // a few descriptors per local rank and per agent
        if let t = plan.timeoutSeconds { OutputStall.deadline = start + UInt64(t) * 1_000_000_000 }
        signalFD = cmx_signal_pipe()
        guard signalFD >= 0 else { throw LaunchError("cannot create a signal pipe", exitCode: 1) }
        for sig in Self.handledSignals { _ = cmx_catch_signal(sig) }
        signal(SIGPIPE, SIG_IGN)
        defer { cleanup() }
        Timeline.mark("planned")
        try startBackends()
        Timeline.mark("backends started")
        try startAgents()
        try startRanks()
        Timeline.mark("ranks started")
        // What jobs killed with SIGKILL left: swept while the ranks load (scanning a crowded
        // /tmp took a millisecond before the first rank could start).
        JobDirectory.removeStale()
        loop()
        Timeline.mark("ranks ended")
        cleanup()
        Timeline.mark("cleaned up")
        if plan.verbose && !isAgent { say("timeline since start: \(Timeline.summary)") }
        return exitCode()
    }

    // MARK: start

    func hostname(of rank: Int) -> String { plan.hosts[ranks[index(rank)].placement.host].name }

    @inline(__always) func index(_ rank: Int) -> Int { indexOfRank[rank] ?? rank }

    var isAgent: Bool { if case .agent = role { true } else { false } }

    /// One backend per host with ranks, each on a socket in the job's private directory, with
    /// enough emulated boards for its ranks (32 endpoints a board) and named after its host:
    /// a child of this process running the backend's code (BackendCommand.fork), tied to it.
    func startBackends() throws(LaunchError) {
        let used = Set(plan.placements.map(\.host)).filter { plan.hosts[$0].agent == nil }
        guard !used.isEmpty else { return }
        let directory = try JobDirectory.make()
        jobDirectory = directory
        for h in used.sorted() {
            let host = plan.hosts[h]
            var options = BackendOptions()
            options.socket = "\(directory)/myrback-\(h).sock"
            (options.boards, options.endpoints) = Self.boards(for: plan.placements.filter { $0.host == h }.count)
            options.foreground = true
            // The job's directory is swiftrun's, made for its backends: the last to exit removes
            // it (also when swiftrun was killed and they got SIGURG).
            options.removeEmptyDirectory = true
            // A host an agent serves names its boards after the job's name for it: distinct NIC
            // ids even where hosts share a kernel hostname (emulated VMs, Slurm nodes).
            // Such a host reaches the job's other hosts over its network: its boards get a wire,
            // `auto` unless the job's MYRIXEN_WIRE says otherwise.
            if isAgent {
                options.hostname = host.name
                options.wire = wireSpecification() ?? "auto"
            }
            // Socket activation: the socket is bound and listening before the backend runs, so
            // ranks start at once and their connections wait in its queue while the backend
            // starts (it holds the socket as descriptor 3). Waiting for a backend to bind its
            // own took most of a short job's launch (docs/performance.md).
            let listener: Int32
            do {
                listener = try BackendLocation.listen(at: options.socket!)
            } catch {
                throw LaunchError("cannot make the backend socket of \(host.name) at \(options.socket!): \(error.message)", exitCode: 1)
            }
            defer { close(listener) }
            // Tied with SIGURG, not SIGTERM: a SIGTERM while the backend still starts would end
            // it before it can clean up (its socket and the job's directory stayed behind).
            // SIGURG is ignored until its handler is in, and the backend then checks that we
            // still run.
            options.listenFd = 3
            options.launcherPid = getpid()
            do {
                backends[h] = (try BackendCommand.fork(options, listener: listener), options.socket!)
            } catch {
                throw LaunchError("cannot start the backend of \(host.name): \(error.message)", exitCode: 1)
            }
        }
    }

    /// The boards a host's backend needs for `ranks` ranks, an endpoint each: boards of the
    /// default 32 endpoints, and beyond 32 such boards, more endpoints a board (up to
    /// `MXLimits.maxRanksPerHost` ranks in all).
    static func boards(for ranks: Int) -> (boards: Int, endpointsPerBoard: Int) {
        let boards = min(MXLimits.maxBoards, max(1, (ranks + MXLimits.endpointsPerBoard - 1) / MXLimits.endpointsPerBoard))
        let perBoard = max(MXLimits.endpointsPerBoard, (ranks + boards - 1) / boards)
        return (boards, min(perBoard, MXLimits.maxEndpointsPerBoard))
    }

    /// MYRIXEN_WIRE as the job's environment gives it (it travels to agents with the job).
    func wireSpecification() -> String? {
        if let e = plan.environment.last(where: { $0.name == MXWire.environment }) {
            return e.value ?? getenv(MXWire.environment).map { String(cString: $0) }
        }
        return getenv(MXWire.environment).map { String(cString: $0) }
    }

    func baseEnvironment() -> [String: String] {
        var env = ChildProcess.currentEnvironment()
        // A launcher's own PMI variables must not leak into the job's ranks.
        for k in ["PMI_FD", "PMI_PORT", "PMI_ID", "PMI_RANK", "PMI_SIZE", "PMI_SPAWNED"] { env[k] = nil }
        for (name, value) in plan.environment {
            env[name] = value ?? getenv(name).map { String(cString: $0) } ?? ""
        }
        if let exe = plan.backendExecutable { env[MXDefaults.backendPathEnvironment] = exe }
        return env
    }

    func startRanks() throws(LaunchError) {
        var base = baseEnvironment()
        // The CPUs the ranks share here, before each is bound to its part (whether they are
        // oversubscribed, and so must not spin, follows from it).
        if base[MXDefaults.hostCPUsEnvironment] == nil { base[MXDefaults.hostCPUsEnvironment] = String(cmx_usable_cpus()) }
        if plan.pmiPort {
            var port: Int32 = 0
            pmiListener = cmx_listen_loopback(&port)
            guard pmiListener >= 0 else { throw LaunchError("cannot listen for PMI on 127.0.0.1: \(String(cString: strerror(errno)))", exitCode: 1) }
            base["PMI_PORT"] = "127.0.0.1:\(port)"
        }
        let size = server.size // the whole job (an agent starts only its host's share)
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(devnull) }
        if let dir = plan.outputDirectory {
            if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                throw LaunchError("--output-dir \(dir): \(String(cString: strerror(errno)))")
            }
        }
        for p in plan.placements {
            indexOfRank[p.rank] = ranks.count
            if plan.hosts[p.host].agent != nil {
                if let dir = plan.outputDirectory {
                    for ext in ["out", "err"] { close(open("\(dir)/rank.\(p.rank).\(ext)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)) }
                }
                var remote = Rank(placement: p)
                remote.remote = true
                ranks.append(remote) // its agent starts it and reports
                continue
            }
            let app = plan.apps[p.app]
            var env = base
            for (name, value) in app.environment { env[name] = value ?? "" }
            env["PMI_RANK"] = String(p.rank)
            env["PMI_SIZE"] = String(size)
            if plan.pmiPort { env["PMI_ID"] = String(pmiIDBase + p.rank) } else { env["PMI_FD"] = "3" }
            env["PMI_APPNUM"] = String(p.app)
            env["MPI_LOCALRANKID"] = String(p.localRank)
            env["MPI_LOCALNRANKS"] = String(p.localSize)
            env["SWIFTRUN_LOCAL_RANK"] = String(p.localRank)
            env["SWIFTRUN_LOCAL_SIZE"] = String(p.localSize)
            env["SWIFTRUN_HOST"] = plan.hosts[p.host].name
            if let b = backends[p.host] { env[MXDefaults.socketEnvironment] = b.socket }
            var pair: [Int32] = [-1, -1]
            guard cmx_stream_pair(&pair) == 0 else {
                throw LaunchError("socketpair: \(String(cString: strerror(errno)))", exitCode: 1)
            }
            var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
            guard cmx_pipe(&outPipe) == 0, cmx_pipe(&errPipe) == 0 else {
                throw LaunchError("pipe: \(String(cString: strerror(errno)))", exitCode: 1)
            }
            var stdinFD = devnull
            if p.rank == 0 {
                var inPipe: [Int32] = [-1, -1]
                guard cmx_pipe(&inPipe) == 0 else { throw LaunchError("pipe: \(String(cString: strerror(errno)))", exitCode: 1) }
                stdinFD = inPipe[0]
                rank0Stdin = inPipe[1]
                _ = fcntl(rank0Stdin, F_SETFL, fcntl(rank0Stdin, F_GETFL) | O_NONBLOCK)
            }
            var outDest: Int32 = 1, errDest: Int32 = 2
            if let dir = plan.outputDirectory {
                outDest = open("\(dir)/rank.\(p.rank).out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                errDest = open("\(dir)/rank.\(p.rank).err", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard outDest >= 0, errDest >= 0 else {
                    throw LaunchError("--output-dir \(dir): cannot create rank \(p.rank)'s files: \(String(cString: strerror(errno)))")
                }
            }
            let command = [app.program] + app.arguments
            var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
            argv.append(nil)
            var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") }
            envp.append(nil)
            let cpus = plan.bindings[p.rank].processingUnits.map(Int32.init)
            var childErrno: Int32 = 0
            let pid = cpus.withUnsafeBufferPointer { c in
                cmx_spawn_rank(command[0], argv, envp, app.workingDirectory, stdinFD, outPipe[1], errPipe[1],
                               plan.pmiPort ? -1 : pair[1], 3, pgid, c.baseAddress, Int32(c.count), SIGKILL, &childErrno)
            }
            argv.forEach { free($0) }
            envp.forEach { free($0) }
            close(pair[1]); close(outPipe[1]); close(errPipe[1])
            if p.rank == 0 { close(stdinFD) }
            if pid < 0 {
                close(pair[0]); close(outPipe[0]); close(errPipe[0])
                let why = String(cString: strerror(childErrno != 0 ? childErrno : errno))
                if childErrno == ENOENT || childErrno == EACCES || childErrno == ENOEXEC {
                    throw LaunchError("cannot execute \(app.program): \(why)")
                }
                if let wdir = app.workingDirectory, childErrno != 0 {
                    throw LaunchError("cannot start rank \(p.rank) in \(wdir): \(why)")
                }
                throw LaunchError("cannot start rank \(p.rank) (\(app.program)): \(why)", exitCode: 1)
            }
            if pgid == 0 { pgid = pid }
            let prefix = plan.tagOutput ? "[\(p.rank)] " : ""
            var rank = Rank(placement: p)
            rank.pid = pid
            if plan.pmiPort { close(pair[0]) } else { rank.pmi = Self.rankChannel(pair[0]) }
            let binding = plan.bindings[p.rank]
            if case let .agent(up) = role {
                // Output goes to swiftrun, which tags it; so do the start and the binding.
                let r = p.rank
                // Bytes as they are (not text): encoded byte by byte, in pieces of at most 64 KiB.
                rank.out = LineForwarder(source: outPipe[0], prefix: "") { AgentWire.sendOutput($0, rank: r, fd: 1, over: up) }
                rank.err = LineForwarder(source: errPipe[0], prefix: "") { AgentWire.sendOutput($0, rank: r, fd: 2, over: up) }
                try? up.send(AgentWire.message("started", [("rank", String(r)), ("pid", String(pid)),
                                                           ("binding", (binding.isBound ? "bound to " : "") + binding.description)]))
            } else {
                rank.out = LineForwarder(source: outPipe[0], destination: outDest, prefix: prefix)
                rank.err = LineForwarder(source: errPipe[0], destination: errDest, prefix: prefix)
            }
            ranks.append(rank)
            if plan.reportBindings && !isAgent {
                report("[\(hostname(of: p.rank)):\(pid)] rank \(p.rank) \(binding.isBound ? "bound to " : "")\(binding.description)")
            }
        }
    }

    // MARK: the loop

    func loop() {
        serveUpstream(read: false)
        while true {
            if ranks.allSatisfy({ $0.outcome != nil && $0.out?.isOpen != true && $0.err?.isOpen != true })
                && agents.values.allSatisfy({ $0.done || $0.lost }) {
                if case let .agent(up) = role { try? up.send(PMIMessage("done")) }
                drainAgentStderr()
                break
            }
            var fds: [pollfd] = [pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
            var what: [(rank: Int, kind: Int)] = [(-1, 0)]
            for (i, r) in ranks.enumerated() {
                if let c = r.pmi, !c.isClosed {
                    fds.append(pollfd(fd: c.fd, events: Int16(POLLIN) | (c.queuedBytes > 0 ? Int16(POLLOUT) : 0), revents: 0))
                    what.append((i, 1))
                }
                if let o = r.out, o.isOpen { fds.append(pollfd(fd: o.source, events: Int16(POLLIN), revents: 0)); what.append((i, 2)) }
                if let e = r.err, e.isOpen { fds.append(pollfd(fd: e.source, events: Int16(POLLIN), revents: 0)); what.append((i, 3)) }
            }
            if pmiListener >= 0 { fds.append(pollfd(fd: pmiListener, events: Int16(POLLIN), revents: 0)); what.append((-1, 6)) }
            if agentListener >= 0 { fds.append(pollfd(fd: agentListener, events: Int16(POLLIN), revents: 0)); what.append((-1, 8)) }
            if agentUnixListener >= 0 { fds.append(pollfd(fd: agentUnixListener, events: Int16(POLLIN), revents: 0)); what.append((-2, 8)) }
            for (h, a) in agents where a.stderr >= 0 { fds.append(pollfd(fd: a.stderr, events: Int16(POLLIN), revents: 0)); what.append((h, 12)) }
            for (k, c) in unauthenticated.enumerated() { fds.append(pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)); what.append((k, 9)) }
            for (h, a) in agents where !a.done && !a.lost {
                if let c = a.channel {
                    fds.append(pollfd(fd: c.fd, events: Int16(POLLIN) | (c.queuedBytes > 0 ? Int16(POLLOUT) : 0), revents: 0))
                    what.append((h, 10))
                }
            }
            if case let .agent(up) = role, !up.isClosed { fds.append(pollfd(fd: up.fd, events: Int16(POLLIN), revents: 0)); what.append((-1, 11)) }
            for (k, c) in unidentified.enumerated() { fds.append(pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)); what.append((k, 7)) }
            let rank0Outbox = ranks.first?.remote == true ? (agents[ranks[0].placement.host]?.channel?.queuedBytes ?? 0) : 0
            if !isAgent && stdinOpen && (rank0Stdin >= 0 || ranks.first?.remote == true) && stdinBuffer.count < 1 << 20 && rank0Outbox < 1 << 20 {
                fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)); what.append((-1, 4))
            }
            if rank0Stdin >= 0 && !stdinBuffer.isEmpty {
                fds.append(pollfd(fd: rank0Stdin, events: Int16(POLLOUT), revents: 0)); what.append((-1, 5))
            }
            var timeout: Int32 = 1000
            let now = monotonicNanoseconds()
            if let k = killAt { timeout = min(timeout, Int32(k > now ? (k - now) / 1_000_000 + 1 : 0)) }
            if let g = giveUpAt { timeout = min(timeout, Int32(g > now ? min((g - now) / 1_000_000 + 1, 1000) : 0)) }
            if ending == nil, let t = plan.timeoutSeconds {
                let end = start + UInt64(t) * 1_000_000_000
                timeout = min(timeout, Int32(end > now ? min((end - now) / 1_000_000 + 1, 1000) : 0))
            }
            let rc = poll(&fds, nfds_t(fds.count), timeout)
            if rc > 0 {
                for (k, f) in fds.enumerated() where f.revents != 0 {
                    let (i, kind) = what[k]
                    switch kind {
                    case 0: handleSignals()
                    case 1:
                        if f.revents & Int16(POLLOUT) != 0 { ranks[i].pmi?.flush() }
                        if f.revents & ~Int16(POLLOUT) != 0 { servePMI(i) }
                    case 2: ranks[i].out?.pump()
                    case 3: ranks[i].err?.pump()
                    case 4: readStdin()
                    case 5: flushStdin()
                    case 6: acceptPMI()
                    case 7: identify(unidentified[i])
                    case 8: acceptAgent(i == -2 ? agentUnixListener : agentListener)
                    case 9: authenticate(unauthenticated[i])
                    case 10:
                        if f.revents & Int16(POLLOUT) != 0 { flushAgent(i) }
                        if f.revents & ~Int16(POLLOUT) != 0 { serveAgent(i) }
                    case 11: serveUpstream()
                    case 12: readAgentStderr(i)
                    default: break
                    }
                }
                unidentified.removeAll { c in c.isClosed || ranks.contains { r in r.pmi === c } }
                unauthenticated.removeAll { c in c.isClosed || agents.values.contains { $0.channel === c } }
            }
            checkDeadlines()
        }
    }

    func handleSignals() {
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(signalFD, &buf, 64)
        guard n > 0 else { return }
        for sig in buf[..<n].map(Int32.init) {
            if sig == SIGCHLD { reap(); continue }
            if isAgent {
                // An agent is told what to do by swiftrun; a signal to it means its host goes away.
                if sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT {
                    upstreamLost = true // the kernel's word (PR_SET_PDEATHSIG) that swiftrun died, as a rule
                    killAll(SIGKILL)
                } else {
                    killAll(sig)
                }
                continue
            }
            if ending != nil && (sig == SIGINT || sig == SIGTERM) {
                say("second \(signalName(sig)): killing every rank now")
                killAll(SIGKILL)
                killAt = nil
                continue
            }
            if sig == SIGINT || sig == SIGTERM || sig == SIGQUIT || sig == SIGHUP {
                say("\(signalName(sig)): forwarding it to the ranks and ending the job")
                end(.interrupted(signal: sig), with: sig)
            } else {
                killAll(sig) // USR1, USR2, ALRM: forwarded, the job goes on
            }
        }
    }

    func reap() {
        for i in ranks.indices where ranks[i].outcome == nil && ranks[i].pid > 0 && !ranks[i].remote {
            var status: Int32 = 0
            // The group's leader is only looked at, not reaped, until the end: while it is a
            // zombie its process-group id cannot be reused, so signals to the group can reach
            // only this job.
            let ended = ranks[i].pid == pgid ? cmx_wait_peek(ranks[i].pid, &status) : cmx_wait(ranks[i].pid, &status, 1)
            guard ended == ranks[i].pid else { continue }
            let outcome = ChildProcess.outcome(status)
            ranks[i].outcome = outcome
            rankEnded(i, outcome)
        }
        for (h, a) in agents {
            guard let p = a.process, let outcome = p.poll() else { continue }
            agents[h]?.process = nil
            readAgentStderr(h)
            // Its launcher is gone: every host it was to reach (one for ssh, all for srun) whose
            // agent never called back cannot be reached now.
            let unreached = agents.keys.filter { k in agents[k]!.channel == nil && !agents[k]!.lost && (k == h || (plan.hosts[k].slurm && plan.hosts[h].slurm)) }
            for k in unreached {
                agents[k]?.lost = true
                endRanks(onHost: k, as: .exited(255))
            }
            if !unreached.isEmpty && ending == nil {
                let said = String(decoding: agents[h]?.stderrText ?? [], as: UTF8.self)
                    .split(separator: "\n").last.map { ": " + $0 } ?? ""
                agents[h]?.stderrText.removeAll() // said once, in this line
                let names = unreached.sorted().map { plan.hosts[$0].name }.joined(separator: ", ")
                say("cannot reach \(names) (\((plan.hosts[h].agent!.first ?? "the launcher").split(separator: "/").last!) ended with \(outcome) before its agent called back)\(said)")
                end(.failed(code: 2), with: SIGTERM)
            }
        }
        for (h, b) in backends {
            if let p = b.process, let outcome = p.poll() {
                backends[h]?.process = nil
                if ending == nil { say("the backend of \(plan.hosts[h].name) (myrback, pid \(p.pid)) \(Self.inWords(outcome)) before the job ended") }
            }
        }
    }

    func rankEnded(_ i: Int, _ outcome: ChildProcess.Outcome) {
        // What it still said on its PMI connection counts (a last abort, a finalize).
        servePMI(i)
        ranks[i].pmi?.close()
        let r = ranks[i]
        if case let .agent(up) = role {
            // swiftrun decides what the end means; it needs to know whether the rank spoke PMI
            // (its finalize, if any, went to swiftrun before this).
            let spoke: [(String, String)] = r.spokePMI ? [("pmi", "1")] : []
            switch outcome {
            case let .exited(c): try? up.send(PMIMessage("exit", [("rank", String(r.placement.rank)), ("code", String(c))] + spoke))
            case let .signalled(sg): try? up.send(PMIMessage("exit", [("rank", String(r.placement.rank)), ("signal", String(sg))] + spoke))
            }
            if let actions = proxy?.rankExited(r.placement.rank) { perform(actions, for: i) }
            return
        }
        let who = describe(i)
        if ending != nil { return }
        switch outcome {
        case .exited(0):
            if r.finalized { break }
            if r.spokePMI {
                // It started PMI (MPI_Init) and left without finalizing: whoever waits for it
                // (in a PMI barrier, or in MPI's own, which swiftrun cannot see) waits forever.
                _ = server.rankExited(r.placement.rank)
                say("\(who) exited with code 0 without finalizing PMI (it had started it); ending the job")
                end(.failed(code: 1), with: SIGTERM)
            } else if server.rankExited(r.placement.rank) {
                say("\(who) exited without finalizing while other ranks wait for it in a barrier; ending the job")
                end(.failed(code: 1), with: SIGTERM)
            }
        case let .exited(code):
            _ = server.rankExited(r.placement.rank)
            say("\(who) exited with code \(code)\(r.finalized ? " after finalizing" : ""); ending the job")
            end(.failed(code: code), with: SIGTERM)
        case let .signalled(sig):
            _ = server.rankExited(r.placement.rank)
            say("\(who) \(Self.inWords(outcome)); ending the job")
            end(.failed(code: 128 + sig), with: SIGTERM)
        }
    }

    /// How a process ended: "exited with code 3", "was killed by signal 9 (SIGKILL)".
    static func inWords(_ outcome: ChildProcess.Outcome) -> String {
        switch outcome {
        case let .exited(code): "exited with code \(code)"
        case let .signalled(sig): "was killed by signal \(sig) (\(signalName(sig)))"
        }
    }

    /// "rank 1 (pid 4242) on vm1".
    func describe(_ i: Int) -> String {
        "rank \(ranks[i].placement.rank) (pid \(ranks[i].pid)) on \(hostname(of: ranks[i].placement.rank))"
    }

    /// The server's end of a rank's PMI connection: non-blocking, lines bounded by the server's.
    static func rankChannel(_ fd: Int32) -> PMILineChannel {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return PMILineChannel(fd: fd, lineLimit: PMIServer.lineMax)
    }

    func servePMI(_ i: Int) {
        guard let c = ranks[i].pmi, !c.isClosed else { return }
        var open = true
        var pfd = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 0) > 0 { open = (try? c.fill()) ?? false }
        // What came before the end still counts (a last finalize or abort); a rank cut off
        // (its connection closed) is not heard any more.
        while !c.isClosed {
            let next: Substring?
            do { next = try c.nextBufferedLine() } catch {
                cutOff(i, "sent a PMI line longer than \(PMIServer.lineMax) bytes, the limit (get_maxes: vallen_max=\(PMIServer.valueMax))")
                return
            }
            guard let line = next else { break }
            if case .agent = role {
                proxyHandle(i, line)
                continue
            }
            guard let m = try? PMIMessage.parse(line) else {
                say("rank \(ranks[i].placement.rank) sent a line that is not PMI-1: \(line.prefix(80))")
                continue
            }
            handlePMI(i, m)
        }
        if !open { c.close() }
    }

    /// Sends a PMI message to a rank of this host without ever blocking: what its socket does
    /// not take waits in the connection's queue. A rank that lets more than
    /// `PMIServer.replyQueueMax` pile up there (it writes requests but does not read the
    /// replies) is cut off.
    func sendToRank(_ i: Int, _ m: PMIMessage) {
        guard let c = ranks[i].pmi, !c.isClosed else { return }
        c.enqueue(m)
        if c.queuedBytes > PMIServer.replyQueueMax {
            cutOff(i, "stopped reading its PMI replies (over \(PMIServer.replyQueueMax >> 10) KiB of them wait)")
        }
    }

    /// A rank that broke a limit of its PMI connection (line length, unread replies, the job's
    /// key-value space) loses the connection, and the job ends as for a failed rank (exit 1).
    /// An agent cuts its rank off and tells swiftrun, which ends the job.
    func cutOff(_ i: Int, _ why: String) {
        ranks[i].pmi?.close()
        if case let .agent(up) = role {
            try? up.send(AgentWire.message("cutoff", [("rank", String(ranks[i].placement.rank)), ("why", why)]))
            return
        }
        guard ending == nil else { return }
        say("\(describe(i)) \(why); cutting it off and ending the job")
        end(.failed(code: 1), with: SIGTERM)
    }

    /// Sends a PMI message to a rank: directly, or through its host's agent.
    func sendPMI(_ i: Int, _ m: PMIMessage) {
        if ranks[i].remote {
            sendToAgent(ranks[i].placement.host, AgentWire.message("pmi", [("rank", String(ranks[i].placement.rank)), ("line", String(m.line.dropLast()))]))
        } else {
            sendToRank(i, m)
        }
    }

    /// The job's PMI server answers one message of rank index `i`.
    func handlePMI(_ i: Int, _ m: PMIMessage) {
        do {
            if plan.verbose {
                say("PMI rank \(ranks[i].placement.rank): \(m)")
                Timeline.mark("first PMI message")
            }
            ranks[i].spokePMI = true
            let out = server.handle(m, from: ranks[i].placement.rank)
            for reply in out.replies { sendPMI(i, reply) }
            handleEvents(out)
        }
    }

    /// What the PMI server's answer means for the job: finalizes, aborts, a released barrier.
    func handleEvents(_ out: PMIServer.Outcome) {
        do {
            for e in out.events {
                switch e {
                case let .finalized(rank): ranks[index(rank)].finalized = true
                case let .abort(rank, code, message):
                    if ending == nil {
                        say("rank \(rank) (pid \(ranks[index(rank)].pid)) on \(hostname(of: rank)) aborted the job with code \(code)\(message.isEmpty ? "" : ": \(message)")")
                        end(.failed(code: code), with: SIGTERM)
                    }
                case .barrierReleased:
                    if plan.verbose { Timeline.mark("first PMI barrier released") }
                    released()
                case let .kvsFull(rank):
                    let k = index(rank)
                    if k >= 0 && k < ranks.count {
                        cutOff(k, PMIServer.kvsFullReason)
                    } else if ending == nil { // an agent's barrier that named none of its ranks
                        say("an agent's puts overfill the job's key-value space (\(PMIServer.putBytesMax >> 20) MiB of keys and values); ending the job")
                        end(.failed(code: 1), with: SIGTERM)
                    }
                }
            }
            if server.barrierIsStranded && ending == nil {
                let gone = server.departed.sorted().map(String.init).joined(separator: ", ")
                say("rank(s) \(gone) exited without finalizing while the others wait for them in a barrier; ending the job")
                end(.failed(code: 1), with: SIGTERM)
            }
        }
    }

    /// PMI_PORT: a rank (or a stranger) connects.
    func acceptPMI() {
        let fd = cmx_accept(pmiListener)
        guard fd >= 0 else { dropOldestStranger(); return }
        connectedAt[fd] = monotonicNanoseconds()
        unidentified.append(Self.rankChannel(fd))
        if unidentified.count > 64 { unidentified.removeFirst().close() }
    }

    /// PMI_PORT: the first line must be `cmd=initack pmiid=N` naming a rank not yet connected;
    /// anything else, and the connection is closed without a word.
    func identify(_ c: PMILineChannel) {
        let open = (try? c.fill()) ?? false
        let next: Substring?
        do { next = try c.nextBufferedLine() } catch { c.close(); return } // an over-long first line: a stranger
        guard let line = next else {
            if !open { c.close() }
            return
        }
        guard let m = try? PMIMessage.parse(line), m.command == "initack", let pmiid = m["pmiid"].flatMap(Int.init),
              pmiid >= pmiIDBase, case let id = pmiid - pmiIDBase, id < ranks.count, !ranks[id].remote, ranks[id].pmi == nil, ranks[id].outcome == nil else {
            c.close()
            return
        }
        ranks[id].pmi = c
        for m in [PMIMessage("initack", [("rc", "0")]), PMIMessage("set", [("size", String(ranks.count))]),
                  PMIMessage("set", [("rank", String(id))]), PMIMessage("set", [("debug", "0")])] {
            sendToRank(id, m)
        }
        servePMI(id) // lines that came with the initack
    }

    func readStdin() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(0, &chunk, chunk.count)
        if n <= 0 {
            if n < 0 && (errno == EINTR || errno == EAGAIN) { return }
            stdinOpen = false
        } else {
            stdinBuffer.append(contentsOf: chunk[..<n])
        }
        flushStdin()
    }

    /// Passes buffered input on to rank 0 (through its agent when it runs elsewhere), and its
    /// end once the input ended and everything went out.
    func flushStdin() {
        if !isAgent, ranks.first?.remote == true {
            let h = ranks[0].placement.host
            guard agents[h]?.channel != nil else { return } // not connected yet: keep it
            var off = 0
            while off < stdinBuffer.count {
                let piece = Array(stdinBuffer[off..<min(off + 65536, stdinBuffer.count)])
                sendToAgent(h, PMIMessage("stdin", [("data", AgentWire.encode(piece))]))
                off += piece.count
            }
            stdinBuffer.removeAll()
            if !stdinOpen && !stdinEndSent {
                sendToAgent(h, PMIMessage("stdin_eof"))
                stdinEndSent = true
            }
            return
        }
        guard rank0Stdin >= 0 else { stdinBuffer.removeAll(); return }
        while !stdinBuffer.isEmpty {
            let n = stdinBuffer.withUnsafeBytes { write(rank0Stdin, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { return }
                stdinBuffer.removeAll() // rank 0 closed its stdin or exited
                closeRank0Stdin()
                return
            }
            stdinBuffer.removeFirst(n)
        }
        if !stdinOpen { closeRank0Stdin() }
    }

    func closeRank0Stdin() {
        if rank0Stdin >= 0 { close(rank0Stdin); rank0Stdin = -1 }
    }

    // MARK: ending

    func end(_ why: Ending, with sig: Int32) {
        if ending == nil { ending = why }
        killAll(sig)
        killAt = monotonicNanoseconds() + Self.graceNanoseconds
    }

    func killAll(_ sig: Int32) {
        if pgid > 0 { kill(-pgid, sig) }
        for r in ranks where r.outcome == nil && r.pid > 0 && !r.remote { kill(r.pid, sig) }
        for (h, a) in agents where !a.done && !a.lost {
            if a.channel != nil { sendToAgent(h, PMIMessage("kill", [("sig", String(sig))])) } else { a.process?.signal(sig) }
        }
    }

    func checkDeadlines() {
        let now = monotonicNanoseconds()
        if let k = killAt, now >= k {
            killAll(SIGKILL)
            killAt = nil
            giveUpAt = now + 5_000_000_000
        }
        // Agents that stay silent that long after the SIGKILL (a partitioned network, a stuck
        // launcher) are given up: the job's end must not wait for them forever.
        if let g = giveUpAt, now >= g {
            for (h, a) in agents where !a.done && !a.lost {
                agents[h]?.lost = true
                a.process?.signal(SIGKILL)
                endRanks(onHost: h, as: .signalled(SIGKILL))
                say("gave up on the agent of \(plan.hosts[h].name): silent 5 s after the job ended")
            }
            giveUpAt = nil
        }
        if ending == nil, let t = plan.timeoutSeconds, now >= start + UInt64(t) * 1_000_000_000 {
            say("timeout: the job ran longer than \(t) s; ending it")
            end(.timedOut, with: SIGTERM)
        }
        // Connections that never said who they are are dropped after 10 s (and at most 64 wait).
        for c in unauthenticated + unidentified {
            if let t = connectedAt[c.fd], now - t > 10_000_000_000 { c.close() }
        }
        unauthenticated.removeAll { $0.isClosed }
        unidentified.removeAll { $0.isClosed }
        // Ranks that are gone but whose output pipes are held open by their own children
        // (a daemon they forked) do not keep the job alive after it ended.
        if ending != nil && killAt == nil && ranks.allSatisfy({ $0.outcome != nil }) {
            for i in ranks.indices { ranks[i].out?.finish(); ranks[i].err?.finish() }
        }
    }

    func exitCode() -> Int32 {
        switch ending {
        case let .failed(code)?:
            let c = code & 0xFF // what a process can exit with (abort(256) must not read as success)
            return c == 0 ? 1 : c
        case let .interrupted(sig)?: return 128 + sig
        case .timedOut?: return Self.timeoutExitCode
        case nil:
            for r in ranks {
                switch r.outcome {
                case .exited(0)?: continue
                case let .exited(c)?: return c
                case let .signalled(s)?: return 128 + s
                case nil: return 1
                }
            }
            return 0
        }
    }

    /// Set once `cleanup` ran (run calls it to time it; its deferred call then does nothing).
    var cleanedUp = false

    func cleanup() {
        guard !cleanedUp else { return }
        cleanedUp = true
        // Nothing of the job outlives it: ranks (and what they left in their group), the backend.
        if pgid > 0 {
            kill(-pgid, SIGKILL)
            var status: Int32 = 0
            _ = cmx_wait(pgid, &status, 0) // the leader, kept as a zombie until now
        }
        for i in ranks.indices where ranks[i].outcome == nil && ranks[i].pid > 0 && !ranks[i].remote && ranks[i].pid != pgid {
            kill(ranks[i].pid, SIGKILL)
            var status: Int32 = 0
            _ = cmx_wait(ranks[i].pid, &status, 0)
        }
        for i in ranks.indices {
            ranks[i].pmi?.close()
            ranks[i].out?.finish()
            ranks[i].err?.finish()
        }
        closeRank0Stdin()
        for (_, b) in backends {
            guard let p = b.process else { continue }
            p.signal(SIGTERM)
            if p.wait(seconds: 2) == nil { p.signal(SIGKILL); _ = p.wait() }
        }
        if agentUnixListener >= 0 { close(agentUnixListener) }
        if let path = agentSocketPath { unlink(path) }
        if let dir = jobDirectory { JobDirectory.remove(dir) } // the backends' sockets, the agents' socket
        if upstreamLost, let dir = controllerDirectory { JobDirectory.removeWhenOwnerGone(dir, within: 1) }
        for (_, a) in agents {
            a.channel?.close()
            if a.stderr >= 0 { close(a.stderr) }
            if let p = a.process, p.wait(seconds: 2) == nil { p.signal(SIGKILL); _ = p.wait() }
        }
        for c in unauthenticated { c.close() }
        if agentListener >= 0 { close(agentListener) }

        if signalFD >= 0 { close(signalFD) }
        if pmiListener >= 0 { close(pmiListener) }
        for c in unidentified { c.close() }
        for sig in Self.handledSignals { cmx_default_signal(sig) }
    }
}

/// SIGINT -> "SIGINT".
public func signalName(_ sig: Int32) -> String {
    let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
                                  SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV",
                                  SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM"]
    return names[sig] ?? "signal \(sig)"
}
