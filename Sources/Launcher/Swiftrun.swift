#if canImport(Glibc)
import Glibc
#endif
import MyriXen

/// The `swiftrun` command: parse, plan, launch, and end with the right exit code.
public enum Swiftrun {
    public static let version = "swiftrun 0.1 (MyriXen; PMI-1)"

    public static func main() -> Never {
        let argv = Array(CommandLine.arguments.dropFirst())
        var env: [String: String] = [:]
        if let t = getenv("MPIEXEC_TIMEOUT") { env["MPIEXEC_TIMEOUT"] = String(cString: t) }
        do {
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
        let plan = try makePlan(options)
        return try LocalJob(plan).run()
    }

    /// Hosts, placements, bindings and programs, checked before anything starts.
    public static func makePlan(_ options: LaunchOptions) throws(LaunchError) -> LocalJob.Plan {
        let here = BackendLocation.localHostName()
        var hosts: [HostEntry]
        var source: String
        if let file = options.hostfile {
            hosts = try Hostfile.load(file)
            source = file
        } else if let list = options.hostList {
            hosts = try Hostfile.parseHostList(list)
            source = "--host \(list)"
        } else {
            hosts = [HostEntry(name: here, slots: nil)]
            source = "this host"
        }
        let topology = try? HostTopology.load()
        let cores = topology.map { max(1, $0.cores.count) } ?? 1
        let placements = try Mapper.map(apps: options.apps, hosts: hosts, perNode: options.perNode, mapBy: options.mapBy,
                                        oversubscribe: options.oversubscribe, source: source, defaultCount: cores)
        let remote = hosts.enumerated().filter { (i, h) in
            placements.contains { $0.host == i } && !isLocal(h.name, here: here)
        }.map(\.element.name)
        if !remote.isEmpty || (options.launcher != nil && options.launcher != .fork) {
            let which = options.launcher.map(\.rawValue) ?? "ssh"
            throw LaunchError("hosts other than this one (\(remote.joined(separator: ", "))) need the \(which) launcher, which this build does not have yet; run on this host or see docs/swiftrun.md")
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
        let local = placements.filter { $0.host == 0 }.count
        var bindings: [Binding] = Array(repeating: .unbound, count: placements.count)
        if let t = topology {
            let plan = Binder.plan(localRanks: local, mapBy: options.mapBy, bindTo: options.bindTo, topology: t)
            for p in placements { bindings[p.rank] = plan[p.localRank] }
        }
        let backend = ChildProcess.currentExecutable().split(separator: "/").dropLast().joined(separator: "/")
        let myrback = "/" + backend + "/myrback"
        return LocalJob.Plan(apps: apps, placements: placements, bindings: bindings, hostname: here,
                             environment: options.environment, tagOutput: options.tagOutput,
                             outputDirectory: options.outputDirectory, timeoutSeconds: options.timeoutSeconds,
                             reportBindings: options.reportBindings, verbose: options.verbose,
                             backendExecutable: access(myrback, X_OK) == 0 ? myrback : nil)
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
