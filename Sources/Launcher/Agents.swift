#if canImport(Glibc)
import Glibc
#endif
import CMyriXen
import MyriXen
import Topology
import PMI

/// swiftrun's side of agents: hosts it cannot fork on (real VMs over ssh) get an agent, a
/// `swiftrun --agent` started through the launcher command, which connects back over TCP,
/// proves it belongs to this job with the job's secret, receives its share of the job, starts
/// those ranks and relays their PMI, output and exits. A stranger on the port gets nothing.
extension LocalJob {
    func startAgents() throws(LaunchError) {
        let hosts = Set(plan.placements.map(\.host)).filter { plan.hosts[$0].agent != nil }.sorted()
        guard !hosts.isEmpty else { return }
        var port: Int32 = 0
        if hosts.contains(where: { !plan.hosts[$0].callsBackLocally }) {
            agentListener = cmx_listen_any(&port)
            guard agentListener >= 0 else { throw LaunchError("cannot listen for agents: \(String(cString: strerror(errno)))", exitCode: 1) }
        }
        if hosts.contains(where: { plan.hosts[$0].callsBackLocally }) {
            if jobDirectory == nil { jobDirectory = try JobDirectory.make() }
            let path = jobDirectory! + "/agents.sock"
            agentUnixListener = cmx_unix_stream_listen(path)
            guard agentUnixListener >= 0 else { throw LaunchError("cannot listen for agents at \(path): \(String(cString: strerror(errno)))", exitCode: 1) }
            agentSocketPath = path
        }
        secret = Self.randomSecret()
        let program = ChildProcess.currentExecutable() // the same swiftrun path on every host
        // ssh: one command per host. Slurm: one srun step over all the allocation's hosts,
        // one agent a node, each finding its host by the node it runs on.
        let slurmHosts = hosts.filter { plan.hosts[$0].slurm }
        for h in hosts where !plan.hosts[h].slurm {
            let host = plan.hosts[h]
            let address = host.callsBackLocally ? "unix:" + agentSocketPath! : "\(Self.addressTowards(host.name) ?? BackendLocation.localHostName()):\(port)"
            let pid = try spawnAgent(host.agent! + [program, "--agent", address, "--host-index", String(h)], for: host.name)
            agents[h] = AgentLink(process: ChildProcess(pid: pid.0), stderr: pid.1)
        }
        if let first = slurmHosts.first {
            let names = slurmHosts.map { plan.hosts[$0].name }
            let map = slurmHosts.map { "\(plan.hosts[$0].name)=\($0)" }.joined(separator: ",")
            let srun = plan.hosts[first].agent![0]
            let command = [srun, "--nodelist=\(names.joined(separator: ","))", "-N", String(names.count), "-n", String(names.count),
                           "--ntasks-per-node=1", "--input=all", "--kill-on-bad-exit=1", "--mpi=none",
                           program, "--agent", "slurm-launch-node:\(port)", "--host-index", "slurm:" + map]
            let (pid, err) = try spawnAgent(command, for: names.joined(separator: ","))
            for h in slurmHosts { agents[h] = AgentLink(process: h == first ? ChildProcess(pid: pid) : nil, stderr: h == first ? err : -1) }
        }
    }

    /// Starts a launcher command for agents; the secret goes down its stdin. Returns its pid
    /// and the read end of its stderr.
    func spawnAgent(_ command: [String], for what: String) throws(LaunchError) -> (Int32, Int32) {
        var inPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard cmx_pipe(&inPipe) == 0, cmx_pipe(&errPipe) == 0 else { throw LaunchError("pipe: \(String(cString: strerror(errno)))", exitCode: 1) }
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var childErrno: Int32 = 0
        let pid = cmx_spawn_rank(command[0], argv, environ, nil, inPipe[0], -1, errPipe[1], -1, -1, 0, nil, 0, SIGTERM, &childErrno)
        close(inPipe[0])
        close(errPipe[1])
        guard pid > 0 else {
            close(inPipe[1])
            close(errPipe[0])
            throw LaunchError("cannot run \(command[0]) to reach \(what): \(String(cString: strerror(childErrno != 0 ? childErrno : errno)))")
        }
        // The secret travels on the agent's stdin, never on a command line.
        let line = secret + "\n"
        _ = line.withCString { write(inPipe[1], $0, strlen($0)) }
        close(inPipe[1])
        if plan.verbose { say("agents for \(what): \(command.joined(separator: " "))") }
        return (pid, errPipe[0])
    }

    /// The launcher's (ssh's, srun's) and the agents' own words: kept until the agent calls
    /// back, then passed on line by line.
    func readAgentStderr(_ h: Int) {
        guard let fd = agents[h]?.stderr, fd >= 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 4096)
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 0) > 0 else { return }
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 {
            close(fd)
            agents[h]?.stderr = -1
            return
        }
        agents[h]?.stderrText += chunk[..<n]
        passOnAgentStderr(h)
        if let count = agents[h]?.stderrText.count, count > 65536 { agents[h]?.stderrText.removeFirst(count - 65536) }
    }

    /// Once the agent called back, what it (or its launcher) said goes to our stderr.
    func passOnAgentStderr(_ h: Int) {
        if agents[h]?.channel != nil, let text = agents[h]?.stderrText, let nl = text.lastIndex(of: 10) {
            LineForwarder.writeAll(LineForwarder.tag(Array(text[...nl]), with: Array("swiftrun: agent on \(plan.hosts[h].name): ".utf8)), to: 2)
            agents[h]?.stderrText.removeSubrange(...nl)
        }
    }

    /// Variables that describe this host or this login, not the job.
    static func hostOnly(_ name: String) -> Bool {
        name.hasPrefix("PMI_") || name.hasPrefix("SSH_") || name.hasPrefix("SLURM_") || name.hasPrefix("SWIFTRUN_")
            || ["HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "MYRIXEN_SOCKET", "MYRBACK_PATH", "DISPLAY", "XAUTHORITY", "TERM", "TMUX"].contains(name)
    }

    static func currentDirectory() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buf, buf.count) != nil else { return nil }
        return String(cString: buf)
    }

    /// 128 bits from the kernel's generator (getrandom), as hex.
    static func randomSecret() -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        precondition(cmx_random(&bytes, 16) == 0, "the kernel's random generator failed")
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    static func randomUInt32() -> UInt32 {
        var v: UInt32 = 0
        precondition(withUnsafeMutableBytes(of: &v) { cmx_random($0.baseAddress, 4) } == 0, "the kernel's random generator failed")
        return v
    }

    /// The local address the kernel would use to reach `host` (no packet is sent).
    static func addressTowards(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "9", &hints, &res) == 0, let a = res else { return nil }
        defer { freeaddrinfo(res) }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 else { return nil }
        var local = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard ok == 0 else { return nil }
        var buf = [CChar](repeating: 0, count: 64)
        var addr = local.sin_addr
        inet_ntop(AF_INET, &addr, &buf, 64)
        return String(cString: buf)
    }

    func acceptAgent(_ listener: Int32) {
        let fd = cmx_accept(listener)
        guard fd >= 0 else { dropOldestStranger(); return }
        _ = cmx_keepalive(fd) // a partitioned network shows as a dead connection within a minute
        connectedAt[fd] = monotonicNanoseconds()
        // Until it proves itself (a short hello), a connection's lines are held to PMI's limit.
        unauthenticated.append(PMILineChannel(fd: fd, lineLimit: PMIServer.lineMax))
        if unauthenticated.count > 64 { unauthenticated.removeFirst().close() }
    }

    /// Out of descriptors: the oldest connection that has not said who it is makes room.
    func dropOldestStranger() {
        if !unauthenticated.isEmpty { unauthenticated.removeFirst().close() }
        else if !unidentified.isEmpty { unidentified.removeFirst().close() }
    }

    /// Queues a message for an agent and sends what its socket takes now: swiftrun never
    /// blocks on an agent (which may itself be busy sending output). An agent that lets more
    /// than `AgentWire.outboxMax` pile up is given up.
    func sendToAgent(_ h: Int, _ m: PMIMessage) {
        guard let c = agents[h]?.channel, agents[h]?.lost != true else { return }
        c.enqueue(m) // broken: the queue is dropped, and its reader sees the end
        if c.queuedBytes > AgentWire.outboxMax {
            loseAgent(h, "it stopped reading (over \(AgentWire.outboxMax >> 20) MiB wait for it)")
        }
    }

    func flushAgent(_ h: Int) { agents[h]?.channel?.flush() }

    /// An agent gone (its connection closed) or given up: its ranks count as killed, and a job
    /// that still ran ends.
    func loseAgent(_ h: Int, _ why: String) {
        agents[h]?.lost = true
        agents[h]?.channel?.close()
        let noneStranded = endRanks(onHost: h, as: .signalled(SIGKILL))
        if ending == nil && !noneStranded {
            say("lost the agent of \(plan.hosts[h].name) (\(why)); ending the job")
            end(.failed(code: 1), with: SIGTERM)
        }
    }

    /// The ranks of host `h` that an agent was to run and that have no outcome yet end with
    /// `outcome` (their agent is gone, or never came). Returns whether there were none.
    @discardableResult
    func endRanks(onHost h: Int, as outcome: ChildProcess.Outcome) -> Bool {
        var none = true
        for r in ranks.indices where ranks[r].remote && ranks[r].placement.host == h && ranks[r].outcome == nil {
            ranks[r].outcome = outcome
            none = false
        }
        return none
    }

    /// At the end: what agents and launchers still had to say, for up to half a second.
    func drainAgentStderr() {
        let deadline = monotonicNanoseconds() + 500_000_000
        while monotonicNanoseconds() < deadline {
            let open = agents.filter { $0.value.stderr >= 0 }
            if open.isEmpty { break }
            var fds = open.map { pollfd(fd: $0.value.stderr, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for (k, h) in open.map(\.key).enumerated() where fds[k].revents != 0 { readAgentStderr(h) }
        }
        for h in agents.keys {
            guard let text = agents[h]?.stderrText, !text.isEmpty else { continue }
            LineForwarder.writeAll(LineForwarder.tag(text + (text.last == 10 ? [] : [10]), with: Array("swiftrun: agent on \(plan.hosts[h].name): ".utf8)), to: 2)
            agents[h]?.stderrText.removeAll()
        }
    }

    /// The first line must be `cmd=hello secret=S host=H` with this job's secret, for a host
    /// that waits for its agent; anything else is closed without a word.
    func authenticate(_ c: PMILineChannel) {
        let open = (try? c.fill()) ?? false
        let next: Substring?
        do { next = try c.nextBufferedLine() } catch { c.close(); return } // an over-long hello: a stranger
        guard let line = next else {
            if !open { c.close() }
            return
        }
        guard let m = try? PMIMessage.parse(line), m.command == "hello", AgentWire.value(m, "secret") == secret,
              let h = m["host"].flatMap(Int.init), agents[h] != nil, agents[h]?.channel == nil, agents[h]?.lost != true else {
            c.close()
            return
        }
        if ending != nil {
            // Too late: the job is ending. The agent hears nothing and exits; its host is done,
            // and so are the ranks it was to start (the job waited for them forever).
            c.close()
            agents[h]?.lost = true
            _ = endRanks(onHost: h, as: .signalled(SIGKILL))
            return
        }
        agents[h]?.channel = c
        c.lineLimit = AgentWire.lineMax
        _ = fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK)
        passOnAgentStderr(h)
        sendJob(to: h)
        // Every agent called back: nobody else needs the door.
        if agents.values.allSatisfy({ $0.channel != nil || $0.lost }) {
            if agentListener >= 0 { close(agentListener); agentListener = -1 }
            if agentUnixListener >= 0 { close(agentUnixListener); agentUnixListener = -1 }
        }
        flushStdin() // input that arrived before this agent did
    }

    /// The host's share of the job: programs, environment, its ranks, then go.
    func sendJob(to h: Int) {
        for (i, app) in plan.apps.enumerated() {
            var fields: [(String, String)] = [("index", String(i)), ("program", app.program)]
            // Ranks start where swiftrun was started, on every host (as mpiexec does).
            if let w = app.workingDirectory ?? Self.currentDirectory() { fields.append(("wdir", w)) }
            for a in app.arguments { fields.append(("arg", a)) }
            for e in app.environment { fields.append(("env", "\(e.name)=\(e.value ?? "")")) }
            sendToAgent(h, AgentWire.message("app", fields))
        }
        // The caller's environment passes through to every host (as mpiexec does), less what
        // belongs to this host or this session, then -x / -genv.
        for (name, value) in ChildProcess.currentEnvironment().sorted(by: { $0.key < $1.key }) where !Self.hostOnly(name) {
            sendToAgent(h, AgentWire.message("env", [("name", name), ("value", value)]))
        }
        for e in plan.environment {
            let value = e.value ?? getenv(e.name).map { String(cString: $0) } ?? ""
            sendToAgent(h, AgentWire.message("env", [("name", e.name), ("value", value)]))
        }
        for p in plan.placements where p.host == h {
            sendToAgent(h, AgentWire.message("rank", [("rank", String(p.rank)), ("app", String(p.app)),
                                                   ("local", String(p.localRank)), ("lsize", String(p.localSize))]))
        }
        sendToAgent(h, AgentWire.message("go", [("size", String(plan.placements.count)), ("host", plan.hosts[h].name),
                                             ("hosts", String(plan.hosts.count)), ("verbose", plan.verbose ? "1" : "0"),
                                             ("kvsname", server.kvsname), ("mapping", server.kvs["PMI_process_mapping"] ?? ""),
                                             ("map", plan.mapBy.rawValue), ("bind", plan.hosts[h].bindTo?.rawValue ?? "default")]))
    }

    /// Every rank entered the barrier: local ranks are answered directly, each agent once for
    /// its whole host, with the puts its cache lacks.
    func released() {
        let delta = server.takeDelta()
        for k in ranks.indices where ranks[k].outcome == nil && !ranks[k].remote {
            sendToRank(k, PMIMessage("barrier_out", [("rc", "0")]))
        }
        for (h, a) in agents where !a.done && !a.lost {
            sendToAgent(h, PMIMessage("barrier_out", delta.map { (AgentWire.encode($0.key), AgentWire.encode($0.value)) }))
        }
    }

    /// Agent: a rank's PMI line goes to the host's proxy.
    func proxyHandle(_ i: Int, _ line: Substring) {
        guard let m = try? PMIMessage.parse(line) else { return }
        ranks[i].spokePMI = true
        if proxy == nil { relay(i, line); return }
        perform(proxy!.handle(m, from: ranks[i].placement.rank), for: i, line: line)
    }

    func relay(_ i: Int, _ line: Substring) {
        guard case let .agent(up) = role else { return }
        try? up.send(AgentWire.message("pmi", [("rank", String(ranks[i].placement.rank)), ("line", String(line))]))
    }

    func perform(_ actions: [PMIProxy.Action], for i: Int, line: Substring? = nil) {
        guard case let .agent(up) = role else { return }
        for a in actions {
            switch a {
            case let .reply(m): sendToRank(i, m)
            case .kvsFull: cutOff(i, PMIServer.kvsFullReason)
            case .relay: if let line { relay(i, line) }
            case let .barrier(entered, puts):
                var fields: [(String, String)] = [("ranks", entered.map(String.init).joined(separator: ","))]
                for p in puts { if let f = p.fields.first { fields.append(("kv", AgentWire.encode(f.key) + "=" + AgentWire.encode(f.value))) } }
                try? up.send(AgentWire.message("barrier", fields))
            }
        }
    }

    /// What an agent says.
    func serveAgent(_ h: Int) {
        guard let c = agents[h]?.channel else { return }
        var open = (try? c.fill()) ?? false
        while !c.isClosed {
            let next: Substring?
            do { next = try c.nextBufferedLine() } catch {
                open = false
                say("the agent of \(plan.hosts[h].name) sent a line longer than \(AgentWire.lineMax >> 20) MiB, the limit")
                break
            }
            guard let line = next else { break }
            guard let m = try? PMIMessage.parse(line) else { continue }
            let rank = m["rank"].flatMap(Int.init)
            let i = rank.map(index) ?? -1
            let valid = i >= 0 && i < ranks.count && ranks[i].remote && ranks[i].placement.host == h
            switch m.command {
            case "started" where valid:
                ranks[i].pid = Int32(m["pid"] ?? "") ?? -1
                if plan.reportBindings { report("[\(plan.hosts[h].name):\(ranks[i].pid)] rank \(rank!) \(AgentWire.value(m, "binding") ?? "")") }
            case "pmi" where valid:
                if let text = AgentWire.value(m, "line"), let pm = try? PMIMessage.parse(Substring(text)) { handlePMI(i, pm) }
            case "barrier":
                // A whole host entered, with its puts: one message per host per barrier.
                let entered = (AgentWire.value(m, "ranks") ?? "").split(separator: ",").compactMap { Int($0) }
                    .filter { r in let k = index(r); return k >= 0 && k < ranks.count && ranks[k].remote && ranks[k].placement.host == h }
                let puts = AgentWire.values(m, "kv").compactMap { (kv: String) -> (key: String, value: String)? in
                    let parts = kv.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    return parts.count == 2 ? (AgentWire.decode(String(parts[0])), AgentWire.decode(String(parts[1]))) : nil
                }
                if plan.verbose { say("PMI host \(plan.hosts[h].name): barrier for ranks \(entered) with \(puts.count) put(s)") }
                handleEvents(server.hostEntered(ranks: entered, puts: puts))
            case "out" where valid:
                let bytes = AgentWire.decodeBytes(m["data"] ?? "%")
                let fd: Int32 = m["fd"] == "2" ? 2 : 1
                emit(rank: rank!, fd: fd, bytes)
            case "cutoff" where valid:
                cutOff(i, AgentWire.value(m, "why") ?? "broke a limit of its PMI connection")
            case "exit" where valid && ranks[i].outcome == nil:
                if m["pmi"] == "1" { ranks[i].spokePMI = true }
                let outcome: ChildProcess.Outcome = m["signal"].flatMap(Int32.init).map { .signalled($0) } ?? .exited(Int32(m["code"] ?? "1") ?? 1)
                ranks[i].outcome = outcome
                rankEnded(i, outcome)
            case "done":
                agents[h]?.done = true
            default:
                break
            }
        }
        if !open && agents[h]?.done != true && agents[h]?.lost != true { loseAgent(h, "its connection closed") }
    }

    /// Output of a remote rank, as the controller writes it (tagged, or to its files).
    func emit(rank: Int, fd: Int32, _ bytes: [UInt8]) {
        let tagged = plan.tagOutput ? LineForwarder.tag(bytes, with: Array("[\(rank)] ".utf8)) : bytes
        if let dir = plan.outputDirectory {
            let path = "\(dir)/rank.\(rank).\(fd == 2 ? "err" : "out")"
            let f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard f >= 0 else { return }
            LineForwarder.writeAll(tagged, to: f)
            close(f)
        } else {
            LineForwarder.writeAll(tagged, to: fd)
        }
    }

    // MARK: the agent's side

    /// What swiftrun tells an agent once its ranks run. With `read: false`, only what is
    /// already buffered (lines that came right behind the job description).
    func serveUpstream(read: Bool = true) {
        guard case let .agent(up) = role else { return }
        var open = read ? ((try? up.fill()) ?? false) : true
        while true {
            let next: Substring?
            do { next = try up.nextBufferedLine() } catch { open = false; break } // not swiftrun as it speaks
            guard let line = next else { break }
            guard let m = try? PMIMessage.parse(line) else { continue }
            switch m.command {
            case "pmi":
                if let r = m["rank"].flatMap(Int.init), let i = indexOfRank[r], let text = AgentWire.value(m, "line"),
                   let pm = try? PMIMessage.parse(Substring(text)) {
                    sendToRank(i, pm)
                }
            case "barrier_out":
                let delta = m.fields.map { (key: AgentWire.decode($0.key), value: AgentWire.decode($0.value)) }
                for r in proxy?.release(delta) ?? [] {
                    if let i = indexOfRank[r] { sendToRank(i, PMIMessage("barrier_out", [("rc", "0")])) }
                }
            case "stdin":
                stdinBuffer += AgentWire.decodeBytes(m["data"] ?? "%")
                flushStdin()
            case "stdin_eof":
                stdinOpen = false
                flushStdin()
            case "kill":
                let sig = Int32(m["sig"] ?? "") ?? SIGKILL
                killAll(sig)
            default:
                break
            }
        }
        if !open {
            // swiftrun is gone: nothing of the job may outlive it.
            up.close()
            upstreamLost = true
            killAll(SIGKILL)
        }
    }
}

/// `swiftrun --agent HOST:PORT --host-index H`: reads the job's secret on stdin, connects to
/// swiftrun, receives its share of the job and runs it.
public enum HostAgent {
    public static func run(_ argv: [String]) throws(LaunchError) -> Int32 {
        guard let i = argv.firstIndex(of: "--agent"), i + 1 < argv.count,
              let j = argv.firstIndex(of: "--host-index"), j + 1 < argv.count else {
            throw LaunchError("usage: swiftrun --agent HOST:PORT --host-index N (started by swiftrun, not by hand)")
        }
        func env(_ n: String) -> String? { getenv(n).map { String(cString: $0) } }
        // Under srun: this agent's host is the node it runs on; swiftrun is on the launch node.
        var h = Int(argv[j + 1]) ?? -1
        if argv[j + 1].hasPrefix("slurm:"), let node = env("SLURMD_NODENAME") {
            for pair in argv[j + 1].dropFirst(6).split(separator: ",") {
                let kv = pair.split(separator: "=")
                if kv.count == 2, kv[0] == node { h = Int(kv[1]) ?? -1 }
            }
        }
        guard h >= 0 else { throw LaunchError("agent: no host index for this node (\(argv[j + 1]))") }
        var controller = argv[i + 1]
        if controller.hasPrefix("slurm-launch-node:") {
            controller = (env("SLURM_LAUNCH_NODE_IPADDR") ?? "127.0.0.1") + controller.dropFirst("slurm-launch-node".count)
        }
        guard let secret = readLine(strippingNewline: true), !secret.isEmpty else {
            throw LaunchError("agent: no job secret on standard input")
        }
        let up: PMILineChannel
        do { up = try PMIClient.connect(controller) } catch {
            throw LaunchError("agent: cannot reach swiftrun at \(controller): \(error.message)", exitCode: 1)
        }
        _ = cmx_keepalive(up.fd)
        up.lineLimit = AgentWire.lineMax
        try? up.send(AgentWire.message("hello", [("secret", secret), ("host", String(h))]))
        var apps: [Int: AppSpec] = [:]
        var environment: [(name: String, value: String?)] = []
        var placements: [RankPlacement] = []
        var size = 0, hostCount = 0, hostName = "", verbose = false, kvsname = "", mapping = ""
        var mapBy = MapBy.slot
        var bindTo: BindTo?
        receiving: while true {
            let m: PMIMessage
            do { m = try up.receive() } catch { throw LaunchError("agent: swiftrun went away before the job arrived", exitCode: 1) }
            switch m.command {
            case "app":
                guard let k = m["index"].flatMap(Int.init), let program = AgentWire.value(m, "program") else { continue }
                var app = AppSpec(program: program, arguments: AgentWire.values(m, "arg"))
                app.workingDirectory = AgentWire.value(m, "wdir")
                app.environment = AgentWire.values(m, "env").map { e in
                    let parts = e.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
                }
                apps[k] = app
            case "env":
                if let n = AgentWire.value(m, "name") { environment.append((n, AgentWire.value(m, "value") ?? "")) }
            case "rank":
                guard let r = m["rank"].flatMap(Int.init), let a = m["app"].flatMap(Int.init),
                      let l = m["local"].flatMap(Int.init), let ls = m["lsize"].flatMap(Int.init) else { continue }
                placements.append(RankPlacement(rank: r, host: h, app: a, localRank: l, localSize: ls))
            case "go":
                size = Int(m["size"] ?? "") ?? 0
                hostCount = Int(m["hosts"] ?? "") ?? (h + 1)
                hostName = AgentWire.value(m, "host") ?? BackendLocation.localHostName()
                verbose = m["verbose"] == "1"
                kvsname = AgentWire.value(m, "kvsname") ?? ""
                mapping = AgentWire.value(m, "mapping") ?? ""
                mapBy = MapBy(rawValue: AgentWire.value(m, "map") ?? "") ?? .slot
                bindTo = BindTo(rawValue: AgentWire.value(m, "bind") ?? "")
                break receiving
            default:
                continue
            }
        }
        let appList = (0..<apps.count).compactMap { apps[$0] }
        guard appList.count == apps.count, size > 0 else { throw LaunchError("agent: the job description was incomplete", exitCode: 1) }
        var bindings = [Binding](repeating: .unbound, count: size)
        if let t = try? HostTopology.load() {
            let plan = Binder.plan(localRanks: placements.count, mapBy: mapBy, bindTo: bindTo, topology: t)
            for p in placements { bindings[p.rank] = plan[p.localRank] }
        }
        let hosts = (0..<max(hostCount, h + 1)).map { LocalJob.HostLaunch(name: $0 == h ? hostName : "") }
        let plan = LocalJob.Plan(apps: appList, placements: placements, bindings: bindings, hosts: hosts,
                                 environment: environment, tagOutput: false, outputDirectory: nil, timeoutSeconds: nil,
                                 reportBindings: false, verbose: verbose,
                                 backendExecutable: BackendLocation.besideThisProgram("myrback"))
        let job = LocalJob(plan, size: size)
        job.role = .agent(upstream: up)
        if controller.hasPrefix("unix:") { // an emulated VM: it shares this machine's files
            job.controllerDirectory = String(controller.dropFirst(5).split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/"))
        }
        var appnum = [Int](repeating: 0, count: size)
        for p in placements where p.rank < size { appnum[p.rank] = p.app }
        job.proxy = PMIProxy(size: size, kvsname: kvsname, appnum: appnum, ranks: Set(placements.map(\.rank)), processMapping: mapping)
        return try job.run()
    }
}
