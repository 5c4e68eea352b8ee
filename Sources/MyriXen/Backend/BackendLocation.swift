#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// Where a host's backend listens, and how a frontend starts one when none runs.
public enum BackendLocation {
    /// `$MYRIXEN_SOCKET`, else `/tmp/myrixen-<uid>/myrback.sock` (directory mode 0700).
    public static func defaultSocketPath() -> String {
        if let p = getenv(MXDefaults.socketEnvironment), p.pointee != 0 { return String(cString: p) }
        return "/tmp/myrixen-\(getuid())/myrback.sock"
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Creates `dir` (and missing parents) private to this user (mode 0700), and refuses a
    /// directory owned by someone else: nobody else may reach the backend's socket.
    public static func makePrivateDirectory(_ dir: String) throws(MXError) {
        var st = stat()
        if stat(dir, &st) != 0 {
            let parent = directory(of: dir)
            if parent != dir && parent != "/" && parent != "." {
                var pst = stat()
                if stat(parent, &pst) != 0 { try makeParents(parent) }
            }
            if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw systemError("mkdir(\(dir))") }
            guard stat(dir, &st) == 0 else { throw systemError("stat(\(dir))") }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw MXError(.badParameter, "\(dir) is not a directory") }
        guard st.st_uid == getuid() else {
            throw MXError(.accessDenied, "\(dir) belongs to uid \(st.st_uid), not to this user; choose another socket path (\(MXDefaults.socketEnvironment))")
        }
        if st.st_mode & 0o077 != 0 { chmod(dir, 0o700) }
    }

    static func makeParents(_ dir: String) throws(MXError) {
        var st = stat()
        if stat(dir, &st) == 0 { return }
        let parent = directory(of: dir)
        if parent != dir && parent != "/" && parent != "." { try makeParents(parent) }
        if mkdir(dir, 0o755) != 0 && errno != EEXIST { throw systemError("mkdir(\(dir))") }
    }

    /// The executable `name` in the folder of the running program, if it is there.
    public static func besideThisProgram(_ name: String) -> String? {
        let path = directory(of: ChildProcess.currentExecutable()) + "/" + name
        return access(path, X_OK) == 0 ? path : nil
    }

    /// The myrback executable: `$MYRBACK_PATH`, else beside this program, else on PATH.
    public static func backendExecutable() -> String? {
        if let p = getenv(MXDefaults.backendPathEnvironment), p.pointee != 0 { return String(cString: p) }
        if let beside = besideThisProgram("myrback") { return beside }
        if let path = getenv("PATH") {
            for dir in String(cString: path).split(separator: ":") {
                let candidate = "\(dir)/myrback"
                if access(candidate, X_OK) == 0 { return candidate }
            }
        }
        return nil
    }

    /// Starts a backend for `socketPath` in the background (it detaches and exits when idle).
    public static func startBackend(socketPath: String) throws(MXError) {
        guard let exe = backendExecutable() else {
            throw MXError(.backendUnavailable, "no backend at \(socketPath) and no myrback executable found; build the package (swift build) or set \(MXDefaults.backendPathEnvironment)")
        }
        let args = [exe, "--socket", socketPath, "--daemonize", "--idle-exit", String(MXDefaults.onDemandIdleSeconds)]
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cargs.append(nil)
        defer { cargs.forEach { free($0) } }
        let pid = cmx_spawn_detached(exe, cargs)
        guard pid > 0 else { throw systemError("posix_spawn(\(exe))") }
        // The daemon double-forks; reap the first process so no zombie stays behind.
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }
}

extension BackendLocation {
    /// This machine's host name (gethostname).
    public static func localHostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Closes every descriptor above stdio that this process inherited. A daemon does this
    /// before it opens anything: a pipe it kept from whoever started it (an MPI rank under
    /// mpiexec or srun) would hold that launcher waiting for end-of-file until it exits.
    public static func closeInheritedDescriptors() {
        cmx_close_inherited()
    }

    /// Detaches the calling process into the background (fork, setsid, fork; stdio to
    /// /dev/null). Returns in the daemon only.
    public static func daemonize() throws(MXError) {
        try check("fork (daemonize)") { cmx_daemonize() }
    }
}
