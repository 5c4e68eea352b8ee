#if canImport(Glibc)
import Glibc
#endif
import MyriXen

/// A job's private directory, `/tmp/swiftrun-PID.START.BOOT-XXXXXX` (mkdtemp: mode 0700),
/// holding the sockets of the job's backends and the one its emulated VMs' agents call back on.
///
/// The name records the directory's owner, the swiftrun (or agent) that made it: its pid, its
/// start time (clock ticks after boot, field 22 of /proc/PID/stat) and the boot it runs in
/// (the first 8 hex digits of /proc/sys/kernel/random/boot_id). A reused pid never passes for
/// the owner, nor does a process of a later boot with the same pid and start time; and no wall
/// clock is consulted, so stepping it (NTP) cannot make a live job's directory look stale. The
/// name is the record because it is made in the same step as the directory: no directory ever
/// exists without one, and an empty directory stays removable.
///
/// A directory whose owner is gone (swiftrun killed with SIGKILL) is removed by whoever finds
/// it: every swiftrun at its start, and an agent whose controller vanished. Only directories
/// of our own uid whose names have this form, checked with lstat and opened without following
/// symlinks; only the files in them (never a directory inside), then the directory itself.
/// Pids are read in this process's pid namespace: a /tmp shared with processes of another one
/// must not be used by both.
public enum JobDirectory {
    /// Where job directories are made.
    public static let base = "/tmp"
    static let prefix = "swiftrun-"

    /// Makes a job directory in `base`, named after this process.
    static func make(in base: String = JobDirectory.base) throws(LaunchError) -> String {
        guard let start = startTime(of: getpid()) else {
            throw LaunchError("cannot read this process's start time from /proc/self/stat", exitCode: 1)
        }
        guard let boot = thisBoot else {
            throw LaunchError("cannot read this machine's boot id from \(bootIDPath) (a Linux /proc is needed)", exitCode: 1)
        }
        var template = Array("\(base)/\(prefix)\(getpid()).\(start).\(boot)-XXXXXX".utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LaunchError("cannot create the job's directory in \(base): \(String(cString: strerror(errno)))", exitCode: 1)
        }
        return String(cString: dir)
    }

    /// The owner a directory's name records; nil for any other name.
    static func owner(of name: String) -> (pid: Int32, start: UInt64, boot: Substring)? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].utf8.count == 6 else { return nil }
        let ids = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard ids.count == 3, let pid = Int32(ids[0]), pid > 0, let start = UInt64(ids[1]), isBootID(ids[2]) else { return nil }
        return (pid, start, ids[2])
    }

    /// When process `pid` started (clock ticks after boot); nil when it does not run (no such
    /// process, or a zombie: it has ended, only its exit status waits to be collected).
    static func startTime(of pid: Int32) -> UInt64? {
        guard let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        // After "pid (comm)": state is field 3, starttime field 22.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return UInt64(fields[19])
    }

    static let bootIDPath = "/proc/sys/kernel/random/boot_id"

    /// This boot, as names record it: the first 8 hex digits of the kernel's boot id (random,
    /// new at every boot); nil when it cannot be read.
    static let thisBoot: String? = readSmallFile(bootIDPath).map { String($0.prefix(8)) }.flatMap { isBootID($0[...]) ? $0 : nil }

    static func isBootID(_ s: Substring) -> Bool {
        s.utf8.count == 8 && s.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    /// Whether the directory named `name` still has its owner: it is of this boot, and that
    /// process runs with the start time the name records. A name of another form is not ours
    /// to judge, nor is any when this boot cannot be told (both count as having an owner).
    static func ownerRuns(_ name: String) -> Bool {
        guard let o = owner(of: name), let boot = thisBoot else { return true }
        if o.boot != boot { return false } // made in an earlier boot: its owner is gone
        return startTime(of: o.pid) == o.start
    }

    /// Removes `path` if it is a job directory of ours whose owner is gone; true when it did.
    @discardableResult
    static func removeIfOwnerGone(_ path: String) -> Bool {
        let name = String(path.split(separator: "/").last ?? "")
        guard owner(of: name) != nil else { return false }
        var st = stat()
        guard lstat(path, &st) == 0, isOurDirectory(st), !ownerRuns(name) else { return false }
        return remove(path)
    }

    /// As `removeIfOwnerGone`, waiting up to `seconds` for the owner to be gone (an agent that
    /// saw its connection close may see it a moment before its controller has fully ended).
    static func removeWhenOwnerGone(_ path: String, within seconds: Double) {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while !removeIfOwnerGone(path) {
            var st = stat()
            guard lstat(path, &st) == 0, monotonicNanoseconds() < deadline else { return }
            usleep(10_000)
        }
    }

    /// Removes every job directory in `base` whose owner is gone; returns their paths.
    @discardableResult
    static func removeStale(in base: String = JobDirectory.base) -> [String] {
        names(in: base).sorted().map { "\(base)/\($0)" }.filter { removeIfOwnerGone($0) }
    }

    /// The names in `base` of job directories (names that record an owner), whoever made them.
    public static func names(in base: String = JobDirectory.base) -> Set<String> {
        guard let d = opendir(base) else { return [] }
        defer { closedir(d) }
        var names: Set<String> = []
        let lead = Array(prefix.utf8)
        while let e = readdir(d) {
            // Only names that start with the prefix become strings: /tmp may hold thousands.
            let name: String? = withUnsafePointer(to: e.pointee.d_name) { p in
                let c = UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self)
                for i in 0..<lead.count where c[i] != lead[i] { return nil }
                return String(cString: c)
            }
            if let name, owner(of: name) != nil { names.insert(name) }
        }
        return names
    }

    /// Those of `names(in:)` whose owner is gone: what ended jobs left behind, not the
    /// directories of jobs still running (a test's check for leftovers, with other jobs about).
    public static func ownerless(in base: String = JobDirectory.base) -> Set<String> {
        names(in: base).filter { !ownerRuns($0) }
    }

    /// Removes a job directory of ours: the files in it, then it. Symlinks are not followed
    /// (one in it is removed as a file); a directory inside is left, and so then is this one.
    @discardableResult
    static func remove(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, isOurDirectory(st) else { return false }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        var opened = stat()
        // The directory opened is the one looked at (not something renamed into its place).
        guard fstat(fd, &opened) == 0, opened.st_dev == st.st_dev, opened.st_ino == st.st_ino, let d = fdopendir(fd) else {
            close(fd)
            return false
        }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            guard name != ".", name != ".." else { continue }
            var est = stat()
            guard fstatat(dirfd(d), name, &est, AT_SYMLINK_NOFOLLOW) == 0, est.st_mode & S_IFMT != S_IFDIR else { continue }
            unlinkat(dirfd(d), name, 0)
        }
        closedir(d)
        return rmdir(path) == 0 || errno == ENOENT
    }

    /// A real directory (not a symlink), owned by us.
    static func isOurDirectory(_ st: stat) -> Bool {
        st.st_mode & S_IFMT == S_IFDIR && st.st_uid == geteuid()
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : nil
    }
}
