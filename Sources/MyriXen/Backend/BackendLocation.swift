#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// Where a host's backend listens, and how a frontend starts one when none runs.
public enum BackendLocation {
    /// `$MYRIXEN_SOCKET`, else `/tmp/myrixen-<uid>/myrback.sock` (the backend creates that
    /// directory, mode 0700).
    public static func defaultSocketPath() -> String {
        if let p = getenv(MXDefaults.socketEnvironment), p.pointee != 0 { return String(cString: p) }
        return "/tmp/myrixen-\(getuid())/myrback.sock"
    }

    /// The directory part of `path` ("." for a bare name), without trailing slashes (a
    /// trailing slash would make `lstat` follow a symbolic link).
    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        var dir = path[..<slash]
        while dir.count > 1 && dir.hasSuffix("/") { dir = dir.dropLast() }
        return dir.isEmpty ? "/" : String(dir)
    }

    static let socketOption = "(--socket or \(MXDefaults.socketEnvironment))"

    /// Checks, without changing anything, that `dir` may hold a backend's socket: a real
    /// directory (`lstat`: not a symbolic link), owned by this user, that no other user can
    /// write to (else they could replace the socket or its lock), in directories no other user
    /// can replace it in (`checkDirectoriesAbove`). Returns false when it does not exist;
    /// throws, naming the directory, the problem and the fix, when it may not be used.
    public static func checkSocketDirectory(_ dir: String) throws(MXError) -> Bool {
        try checkDirectoriesAbove(dir)
        var st = stat()
        guard lstat(dir, &st) == 0 else {
            if errno == ENOENT { return false }
            throw systemError("lstat(\(dir))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: break
        case S_IFLNK:
            throw MXError(.accessDenied, "\(dir), the directory of the backend's socket, is a symbolic link; the backend uses only a real directory of its own (it creates one, mode 0700, where none is): remove the link or choose another socket path \(socketOption)")
        default:
            throw MXError(.badParameter, "\(dir), the directory of the backend's socket, is not a directory; remove it or choose another socket path \(socketOption)")
        }
        guard st.st_uid == getuid() else {
            throw MXError(.accessDenied, "\(dir), the directory of the backend's socket, belongs to uid \(st.st_uid), not to this user (uid \(getuid())); choose a socket path in a directory of your own \(socketOption)")
        }
        guard st.st_mode & 0o022 == 0 else {
            throw MXError(.accessDenied, "\(dir), the directory of the backend's socket, is writable by other users (mode \(String(st.st_mode & 0o7777, radix: 8))), who could replace the socket; the backend does not change a directory it did not create: use one only you can write to (the default /tmp/myrixen-<uid> is made so), or chmod go-w \(dir)")
        }
        return true
    }

    /// The directories above the socket directory `dir`, from its parent up to `/` as they
    /// resolve (`realpath`), must not let another user rename what they hold: none may be
    /// writable by group or others unless it is sticky (as /tmp is: there only an entry's
    /// owner may rename or remove it). Else `dir`, checked with `lstat`, could be moved away
    /// and a symbolic link put in its place before the backend binds or unlinks its socket by
    /// path. Nothing to check when the parent does not exist (`checkParentExists` says so).
    static func checkDirectoriesAbove(_ dir: String) throws(MXError) {
        // The directory that holds `dir`'s entry (for "." or "..", the one above them).
        let last = dir.split(separator: "/").last
        let parent = last == "." || last == ".." ? dir + "/.." : directory(of: dir)
        guard parent != dir, let resolved = realpath(parent, nil) else { return }
        var path = String(cString: resolved)
        free(resolved)
        while true {
            var st = stat()
            guard stat(path, &st) == 0 else { throw systemError("stat(\(path))") }
            if st.st_mode & 0o022 != 0 && st.st_mode & S_ISVTX == 0 {
                throw MXError(.accessDenied, "\(path), a directory above \(dir) (the directory of the backend's socket), is writable by other users and not sticky (mode \(String(st.st_mode & 0o7777, radix: 8))): they could move \(dir) away and put a symbolic link in its place; choose a socket path \(socketOption) under directories only you can write to (or sticky ones, such as /tmp), or chmod go-w \(path)")
            }
            guard path != "/" else { return }
            path = directory(of: path)
        }
    }

    /// Makes the socket directory `dir` ready: an existing one must pass `checkSocketDirectory`
    /// and is used as it is; a missing one is created, mode 0700 (its parent must exist), and
    /// checked again. Returns whether it was created here (only then may it be removed).
    public static func preparePrivateDirectory(_ dir: String) throws(MXError) -> Bool {
        if try checkSocketDirectory(dir) { return false }
        try checkParentExists(of: dir)
        if mkdir(dir, 0o700) != 0 {
            let err = errno
            guard err == EEXIST else { throw MXError(.system, "cannot create \(dir), the directory of the backend's socket: \(String(cString: strerror(err)))") }
            // Made meanwhile by someone else: usable only if it passes as any existing one.
            if try checkSocketDirectory(dir) { return false }
            throw MXError(.system, "\(dir), the directory of the backend's socket, vanished while it was being created")
        }
        guard try checkSocketDirectory(dir) else {
            throw MXError(.system, "\(dir), the directory of the backend's socket, vanished after it was created")
        }
        return true
    }

    /// The socket directory's parent must exist: the backend creates one directory, not a path.
    static func checkParentExists(of dir: String) throws(MXError) {
        let parent = directory(of: dir)
        var st = stat()
        guard parent == dir || stat(parent, &st) == 0 else {
            throw MXError(.badParameter, "cannot create \(dir), the directory of the backend's socket: \(parent) does not exist; create it or choose another socket path \(socketOption)")
        }
    }

    /// The executable `name` in the folder of the running program, if it is there.
    /// A backend's listening socket bound at `path`, private to this user (mode 0600), with
    /// room for `SOMAXCONN` connections waiting to be accepted. Close-on-exec.
    public static func listen(at path: String) throws(MXError) -> Int32 {
        let fd = cmx_seqpacket_socket()
        guard fd >= 0 else { throw systemError("socket(AF_UNIX, SOCK_SEQPACKET)") }
        let oldMask = umask(0o077)
        let rc = cmx_unix_listen(fd, path, SOMAXCONN)
        let err = errno
        umask(oldMask)
        if rc < 0 {
            closeDescriptor(fd)
            throw MXError(.system, "cannot listen on \(path): \(String(cString: strerror(err)))")
        }
        chmod(path, 0o600)
        return fd
    }

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
        // A directory the backend would refuse is refused here, with its reason: the daemon
        // has no terminal to say it on.
        let dir = directory(of: socketPath)
        if try !checkSocketDirectory(dir) { try checkParentExists(of: dir) }
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
