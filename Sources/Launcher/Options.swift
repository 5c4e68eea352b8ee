import MyriXen

/// How ranks are laid out over hosts and their processors.
public enum MapBy: String, CaseIterable, Sendable { case slot, node, core, socket, numa }

/// What each rank is bound to.
public enum BindTo: String, CaseIterable, Sendable { case none, hwthread, core, socket, numa }

/// How agents reach their hosts.
public enum LauncherKind: String, CaseIterable, Sendable { case fork, ssh, netns, slurm }

/// One program of a (possibly MPMD) job.
public struct AppSpec: Equatable, Sendable {
    public var program: String
    public var arguments: [String]
    public var count: Int?
    public var environment: [(name: String, value: String?)] = []
    public var workingDirectory: String?

    public static func == (a: AppSpec, b: AppSpec) -> Bool {
        a.program == b.program && a.arguments == b.arguments && a.count == b.count
            && a.workingDirectory == b.workingDirectory
            && a.environment.elementsEqual(b.environment) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// Everything the command line says.
public struct LaunchOptions: Sendable {
    public var apps: [AppSpec] = []
    public var hostfile: String?
    public var hostList: String?
    public var perNode: Int?
    public var mapBy: MapBy = .slot
    public var bindTo: BindTo?
    public var reportBindings = false
    public var oversubscribe = false
    /// -x / -genv: exported to every rank (value nil: the caller's value).
    public var environment: [(name: String, value: String?)] = []
    public var tagOutput = false
    public var outputDirectory: String?
    public var timeoutSeconds: Int?
    public var launcher: LauncherKind?
    public var launcherExec: String?
    public var verbose = false
    /// Serve PMI over TCP (PMI_PORT + PMI_ID) instead of an inherited socketpair (PMI_FD).
    public var pmiPort = false
    public var showVersion = false
    public var showHelp = false

    public init() {}

    /// `[A-Za-z_][A-Za-z0-9_]*`: a name the ranks' environment can carry and a shell export.
    public static func isVariableName(_ s: some StringProtocol) -> Bool {
        guard let first = s.utf8.first, !(48...57).contains(first) else { return false }
        return s.utf8.allSatisfy { ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || (48...57).contains($0) || $0 == 0x5F }
    }

    /// The longest `--timeout` (and MPIEXEC_TIMEOUT): a year.
    public static let maxTimeoutSeconds = 31_536_000
    static let timeoutLimit = "a year (\(maxTimeoutSeconds) s), the longest timeout; lower it or give none"

    /// Parses `swiftrun [options] PROGRAM [ARGS...] [: [options] PROGRAM2 ...]`. Options take
    /// the spellings of mpiexec (`-np`, `-ppn`, `-genv`, `-f`) and mpirun (`--hostfile`,
    /// `--map-by`, `-x`), with `--opt=value` or `--opt value`. `environment` supplies
    /// MPIEXEC_TIMEOUT.
    public static func parse(_ argv: [String], environment env: [String: String] = [:]) throws(LaunchError) -> LaunchOptions {
        var o = LaunchOptions()
        var i = 0
        var app = AppSpec(program: "", arguments: [])
        var inProgram = false
        func finishApp() throws(LaunchError) {
            guard !app.program.isEmpty else {
                throw LaunchError(o.apps.isEmpty ? "no program to run (usage: swiftrun [options] PROGRAM [ARGS...])"
                                                 : "nothing after ':' (each ':' starts another program)")
            }
            o.apps.append(app)
            app = AppSpec(program: "", arguments: [])
            inProgram = false
        }
        while i < argv.count {
            let arg = argv[i]
            i += 1
            if inProgram {
                if arg == ":" { try finishApp() } else { app.arguments.append(arg) }
                continue
            }
            if arg == ":" { try finishApp(); continue }
            guard arg.hasPrefix("-"), arg.count > 1 else {
                app.program = arg
                inProgram = true
                continue
            }
            var name = String(arg.drop { $0 == "-" })
            var inline: String?
            var spelled = arg // the option as the user wrote it, without its =VALUE
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
                spelled = String(arg.prefix { $0 != "=" })
            }
            func value() throws(LaunchError) -> String {
                if let v = inline { return v }
                guard i < argv.count else { throw LaunchError("\(spelled) needs a value") }
                i += 1
                return argv[i - 1]
            }
            /// A count in 1...limit; `over` says what the limit is and what to do.
            func count(limit: Int, over: String) throws(LaunchError) -> Int {
                let v = try value()
                switch Count(v, limit: limit) {
                case let .value(n): return n
                case .notPositive: throw LaunchError("\(spelled) must be a positive number, not '\(v)'")
                case .over: throw LaunchError("\(spelled) \(v) is more than \(over)")
                }
            }
            /// A variable's name for -x, -genv, -env: what a shell can export.
            func variable(_ text: String, _ usage: String) throws(LaunchError) -> String {
                if text.hasPrefix("-") && inline == nil {
                    throw LaunchError("\(spelled) needs \(usage), not the option '\(text)'")
                }
                let n = String(text.prefix { $0 != "=" })
                guard LaunchOptions.isVariableName(n) else {
                    throw LaunchError("\(spelled) \(text): '\(n)' is not a variable name (letters, digits and '_', not starting with a digit); give \(usage)")
                }
                return n
            }
            switch name {
            case "n", "np", "c":
                app.count = try count(limit: MXLimits.maxRanksPerJob, over: "\(Mapper.perJobLimit); lower it")
            case "f", "hostfile", "machinefile", "machine-file":
                o.hostfile = try value()
            case "host", "hosts", "H":
                o.hostList = try value()
            case "ppn", "npernode", "N":
                o.perNode = try count(limit: MXLimits.maxRanksPerHost, over: "\(Mapper.perHostLimit); lower it")
            case "map-by", "mapby":
                let v = try value()
                guard let m = MapBy(rawValue: v.lowercased()) else {
                    throw LaunchError("--map-by \(v): use one of \(MapBy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                o.mapBy = m
            case "bind-to", "bindto", "binding":
                let v = try value()
                guard let b = BindTo(rawValue: v.lowercased() == "hwthreads" ? "hwthread" : v.lowercased()) else {
                    throw LaunchError("--bind-to \(v): use one of \(BindTo.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                o.bindTo = b
            case "report-bindings":
                o.reportBindings = true
            case "oversubscribe":
                o.oversubscribe = true
            case "x":
                let v = try value()
                let n = try variable(v, "NAME or NAME=VALUE")
                o.environment.append((n, v.count > n.count ? String(v.dropFirst(n.count + 1)) : nil))
            case "genv", "env":
                let n = try value()
                guard try variable(n, "NAME VALUE") == n else {
                    throw LaunchError("\(spelled) \(n): NAME and VALUE are two words (\(spelled) NAME VALUE), or use -x NAME=VALUE")
                }
                guard i < argv.count else { throw LaunchError("\(arg) NAME VALUE: the value is missing") }
                let v = argv[i]
                i += 1
                if name == "env" { app.environment.append((n, v)) } else { o.environment.append((n, v)) }
            case "genvall":
                break // the caller's environment passes through anyway
            case "wdir", "wd", "cwd":
                app.workingDirectory = try value()
            case "l", "tag-output", "prepend-rank":
                o.tagOutput = true
            case "output-dir", "outfile-dir", "output-filename":
                o.outputDirectory = try value()
            case "timeout":
                o.timeoutSeconds = try count(limit: maxTimeoutSeconds, over: timeoutLimit)
            case "launcher", "bootstrap":
                let v = try value()
                guard let l = LauncherKind(rawValue: v) else {
                    throw LaunchError("--launcher \(v): use one of \(LauncherKind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                o.launcher = l
            case "launcher-exec", "bootstrap-exec":
                o.launcherExec = try value()
            case "v", "verbose":
                o.verbose = true
            case "pmi-port":
                o.pmiPort = true
            case "version", "V":
                o.showVersion = true
            case "h", "help":
                o.showHelp = true
            default:
                throw LaunchError("unknown option \(arg) (see swiftrun --help)")
            }
        }
        if o.showHelp || o.showVersion { return o }
        try finishApp()
        if o.timeoutSeconds == nil, let t = env["MPIEXEC_TIMEOUT"] {
            switch Count(t, limit: maxTimeoutSeconds) {
            case let .value(n): o.timeoutSeconds = n
            case .notPositive: throw LaunchError("MPIEXEC_TIMEOUT=\(t) is not a positive number of seconds")
            case .over: throw LaunchError("MPIEXEC_TIMEOUT=\(t) is more than \(timeoutLimit)")
            }
        }
        if o.hostfile != nil && o.hostList != nil {
            throw LaunchError("give either a hostfile or --host, not both")
        }
        return o
    }

    public static let usage = """
    usage: swiftrun [options] PROGRAM [ARGS...] [: [options] PROGRAM2 [ARGS...] ...]

    Ranks and hosts:
      -n, -np N                   ranks of this program (default: the slots, or the cores);
                                  at most \(MXLimits.maxRanksPerJob) a job and \(MXLimits.maxRanksPerHost) a host
      -f, --hostfile, --machinefile FILE
                                  hosts: "host", "host:N" or "host slots=N [max_slots=M]"
      --host h1:2,h2              hosts on the command line
      -ppn, --npernode N          ranks per host
      --map-by slot|node|core|socket|numa
      --bind-to none|hwthread|core|socket|numa   (default: core when ranks fit the cores)
      --report-bindings           one line per rank: where it is bound
      --oversubscribe             allow more ranks than slots (oversubscribed ranks are not bound)
    Environment and files:
      -x NAME[=VALUE], -genv NAME VALUE   export to every rank; -env NAME VALUE: this program's
      --wdir DIR                  working directory of the ranks
      -l, --tag-output            prefix every line with [rank]
      --output-dir DIR            each rank's output to DIR/rank.N.out and DIR/rank.N.err
    Control:
      --timeout SECONDS           end the job after this long (also MPIEXEC_TIMEOUT); exit 124
      --launcher fork|ssh|netns|slurm, --launcher-exec PATH
      --pmi-port                  PMI over TCP (PMI_PORT + PMI_ID) instead of PMI_FD (this host)
      -v, --verbose   --version   -h, --help
    Exit code: 0 when every rank exited 0; else the first failing rank's code (128+signal when
    killed); 2 for usage errors; 124 on timeout; 128+signal when swiftrun was interrupted.
    """
}
