#if canImport(Glibc)
import Glibc
#endif
import MyriXen
import Topology

/// The `swiftrun` command: parse, plan, launch, and end with the right exit code.
public enum Swiftrun {
    public static let version = "swiftrun 0.1 (MyriXen; PMI-1)"

    public static func main() -> Never {
        Timeline.start = monotonicNanoseconds()
        // Started with stdin, stdout or stderr closed (some CI systems do that), the next
        // descriptors we open would take those numbers and be mistaken for them.
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) < 0 {
            let null = open("/dev/null", O_RDWR)
            if null >= 0 && null != fd { dup2(null, fd); close(null) }
        }
        let argv = Array(CommandLine.arguments.dropFirst())
        let env = ChildProcess.currentEnvironment()
        do {
            if argv.first == "--agent" { exit(try HostAgent.run(argv)) } // how swiftrun starts its agents
            exit(try run(argv, environment: env))
        } catch {
            let line = "\(error.description)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
            exit(error.exitCode)
        }
    }

    public static func run(_ argv: [String], environment: [String: String]) throws(LaunchError) -> Int32 {
        let options = try LaunchOptions.parse(argv, environment: environment)
        if options.showHelp { print(LaunchOptions.usage); return 0 }
        if options.showVersion { print(version); return 0 }
        let plan = try makePlan(options, environment: environment)
        Timeline.mark("plan made")
        return try LocalJob(plan).run()
    }

    /// Hosts, placements, bindings and programs, checked before anything starts.
    public static func makePlan(_ options: LaunchOptions, environment: [String: String] = [:]) throws(LaunchError) -> LocalJob.Plan {
        let here = BackendLocation.localHostName()
        var hosts: [HostEntry]
        var source: String
        var inSlurm = false
        if let file = options.hostfile {
            hosts = try Hostfile.load(file)
            source = file
        } else if let list = options.hostList {
            hosts = try Hostfile.parseHostList(list)
            source = "--host \(list)"
        } else if let slurm = try SlurmAllocation.hosts(environment: environment) {
            hosts = slurm
            source = "the Slurm allocation"
            inSlurm = true
        } else {
            hosts = [HostEntry(name: here, slots: nil)]
            source = "this host"
        }
        let topology = try? HostTopology.load()
        Timeline.mark("topology read")
        let cores = topology.map { max(1, $0.cores.count) } ?? 1
        let placements = try Mapper.map(apps: options.apps, hosts: hosts, perNode: options.perNode, mapBy: options.mapBy,
                                        oversubscribe: options.oversubscribe, source: source, defaultCount: cores)
        // How each host is reached: this host by fork; every other host through an agent,
        // started by `ip netns exec` for an emulated VM (a network namespace of that name), by
        // ssh, or by srun inside a Slurm allocation.
        var launches: [LocalJob.HostLaunch] = []
        let usedHosts = Set(placements.map(\.host))
        for (i, h) in hosts.enumerated() {
            let used = usedHosts.contains(i)
            let kind = options.launcher ?? (inSlurm ? .slurm : isLocal(h.name, here: here) ? .fork : isNamespace(h.name) ? .netns : .ssh)
            switch kind {
            case .fork:
                if used && !isLocal(h.name, here: here) {
                    throw LaunchError("--launcher fork starts ranks on this host only, not on \(h.name)")
                }
                launches.append(LocalJob.HostLaunch(name: isLocal(h.name, here: here) ? here : h.name))
            case .netns:
                if used && !isNamespace(h.name) {
                    throw LaunchError("\(h.name) is not a network namespace of this machine (ip netns list); create it or use another launcher")
                }
                // Emulated VMs share this machine's processors: their ranks are bound only when
                // asked (--bind-to), like oversubscribed ones.
                let ip = options.launcherExec ?? findIP()
                launches.append(LocalJob.HostLaunch(name: h.name, agent: [ip, "netns", "exec", h.name],
                                                    callsBackLocally: true, bindTo: options.bindTo ?? BindTo.none))
            case .ssh:
                // An agent on the host, reached by ssh (key-based, no prompts: BatchMode).
                let ssh = options.launcherExec ?? "/usr/bin/ssh"
                let target = h.user.map { "\($0)@\(h.name)" } ?? h.name
                launches.append(LocalJob.HostLaunch(name: h.name, agent: [ssh, "-x", "-o", "BatchMode=yes", target],
                                                    bindTo: options.bindTo))
            case .slurm:
                // Agents started by one srun step over the allocation's nodes (see startAgents).
                guard environment["SLURM_JOB_ID"] != nil else {
                    throw LaunchError("--launcher slurm works inside a Slurm allocation (salloc, sbatch); SLURM_JOB_ID is not set")
                }
                launches.append(LocalJob.HostLaunch(name: h.name, agent: [options.launcherExec ?? "srun"], slurm: true, bindTo: options.bindTo))
            }
        }
        let apps = try options.apps.map { (app) throws(LaunchError) -> AppSpec in
            var a = app
            a.program = try resolveProgram(app.program)
            if let w = a.workingDirectory {
                var st = stat()
                guard stat(w, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                    throw LaunchError("--wdir \(w): not a directory")
                }
            }
            return a
        }
        // This host binds its ranks here; an agent binds its host's with that host's topology.
        var bindings: [Binding] = Array(repeating: .unbound, count: placements.count)
        if let t = topology {
            for h in usedHosts where launches[h].agent == nil {
                let here = placements.filter { $0.host == h }
                let plan = Binder.plan(localRanks: here.count, mapBy: options.mapBy, bindTo: options.bindTo, topology: t)
                for p in here { bindings[p.rank] = plan[p.localRank] }
            }
        }
        if options.pmiPort && launches.contains(where: { $0.agent != nil }) {
            throw LaunchError("--pmi-port serves ranks of this host only (127.0.0.1); other hosts' agents use PMI_FD")
        }
        var plan = LocalJob.Plan(apps: apps, placements: placements, bindings: bindings, hosts: launches,
                             environment: options.environment, tagOutput: options.tagOutput,
                             outputDirectory: options.outputDirectory, timeoutSeconds: options.timeoutSeconds,
                             reportBindings: options.reportBindings, verbose: options.verbose,
                             backendExecutable: BackendLocation.besideThisProgram("myrback"))
        plan.pmiPort = options.pmiPort
        plan.mapBy = options.mapBy
        return plan
    }

    /// Whether `name` is a network namespace of this machine (an emulated VM).
    static func isNamespace(_ name: String) -> Bool {
        !name.contains("/") && access("/run/netns/\(name)", F_OK) == 0
    }

    static func findIP() -> String {
        for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] where access(p, X_OK) == 0 { return p }
        return "ip"
    }

    static func isLocal(_ name: String, here: String) -> Bool {
        name == "localhost" || name == here || name.hasPrefix("127.") || name == "::1"
            || name.split(separator: ".").first.map(String.init) == here
    }

    /// The program as it will be executed: a path that exists and is executable.
    static func resolveProgram(_ program: String) throws(LaunchError) -> String {
        if program.contains("/") {
            var st = stat()
            guard stat(program, &st) == 0 else { throw LaunchError("\(program): no such file") }
            guard st.st_mode & S_IFMT != S_IFDIR else { throw LaunchError("\(program) is a directory, not a program") }
            guard access(program, X_OK) == 0 else { throw LaunchError("\(program) is not executable (chmod +x?)") }
            return program
        }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            var st = stat()
            if stat(candidate, &st) == 0, st.st_mode & S_IFMT != S_IFDIR, access(candidate, X_OK) == 0 { return candidate }
        }
        throw LaunchError("\(program): command not found (not a path, and not on PATH)")
    }
}
