#if canImport(Glibc)
import Glibc
#endif
import MyriXen

/// Where the package's executables were built (beside the test bundle or the running tool).
public enum BuiltProducts {
    public static var directory: String {
        let exe = ChildProcess.currentExecutable()
        return String(exe[..<exe.lastIndex(of: "/")!])
    }
    public static func path(_ name: String) -> String { directory + "/" + name }
}

/// A private myrback for one test: its own socket in its own directory, started in the
/// foreground by pid and ended by that pid, with its directory removed afterwards.
public final class TestBackend {
    public let directory: String
    public let socketPath: String
    public private(set) var process: ChildProcess?

    /// `wire`: the backend's address on the wire to other hosts (`--wire`), none by default;
    /// `hostTimeout`: its `--host-timeout`.
    public let wire: String?
    public let hostTimeout: Int?
    /// More myrback options; and its descriptor limit (soft and hard, `ulimit -n`), if one is given.
    public let arguments: [String]
    public let descriptorLimit: Int?

    public init(boards: Int = 1, endpoints: Int? = nil, ringKB: Int? = nil, wire: String? = nil, hostTimeout: Int? = nil,
                arguments: [String] = [], descriptorLimit: Int? = nil, start: Bool = true) throws {
        self.wire = wire
        self.hostTimeout = hostTimeout
        self.arguments = arguments
        self.descriptorLimit = descriptorLimit
        var template = Array("/tmp/mxtest-XXXXXX".utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw MXError(.system, "mkdtemp failed")
        }
        directory = String(cString: dir)
        chmod(directory, 0o700)
        socketPath = directory + "/myrback.sock"
        if start { try self.start(boards: boards, endpoints: endpoints, ringKB: ringKB) }
    }

    /// Starts (or restarts) the backend and waits until it answers.
    public func start(boards: Int = 1, endpoints: Int? = nil, ringKB: Int? = nil) throws {
        var args = ["--socket", socketPath, "--foreground", "--boards", String(boards)]
        if let e = endpoints { args += ["--endpoints", String(e)] }
        if let r = ringKB { args += ["--ring-kb", String(r)] }
        if let w = wire { args += ["--wire", w] }
        if let t = hostTimeout { args += ["--host-timeout", String(t)] }
        args += arguments
        // Tied to this process: a test that crashes leaves no backend behind. With a limit, the
        // shell sets it and becomes myrback (exec: the pid stays the one started).
        let p = try descriptorLimit.map { n in
            try ChildProcess.spawnTied("/bin/sh", ["-c", "ulimit -n \(n) && exec \"$0\" \"$@\"", BuiltProducts.path("myrback")] + args)
        } ?? ChildProcess.spawnTied(BuiltProducts.path("myrback"), args)
        process = p
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while monotonicNanoseconds() < deadline {
            if let outcome = p.poll() { throw MXError(.backendUnavailable, "myrback exited at start: \(outcome)") }
            if let ctx = try? MXContext(socketPath: socketPath, startBackend: false) {
                ctx.finalize()
                return
            }
            usleep(5_000)
        }
        throw MXError(.backendUnavailable, "myrback did not answer within 10 s")
    }

    /// Kills the backend with `signal` and reaps it.
    @discardableResult
    public func kill(_ sig: Int32 = SIGKILL) -> ChildProcess.Outcome? {
        guard let p = process else { return nil }
        p.signal(sig)
        process = nil
        return p.wait(seconds: 10)
    }

    /// Ends the backend (SIGTERM, then SIGKILL) and removes its directory.
    public func stop() {
        if let p = process {
            p.signal(SIGTERM)
            if p.wait(seconds: 5) == nil { p.signal(SIGKILL); _ = p.wait() }
            process = nil
        }
        removeDirectory()
    }

    func removeDirectory() {
        if let d = opendir(directory) {
            while let e = readdir(d) {
                let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
                if name != "." && name != ".." { unlink(directory + "/" + name) }
            }
            closedir(d)
        }
        rmdir(directory)
    }

    public func context() throws -> MXContext { try MXContext(socketPath: socketPath, startBackend: false) }

    deinit { stop() }
}

/// The match infos the multi-process tests and their peer process speak.
public enum PeerTag {
    public static let hello: UInt64 = 0xFEED_0000_0000_0000
    public static let status: UInt64 = 0xFEED_0000_0000_0001
    public static let done: UInt64 = 0xFEED_0000_0000_0002
    public static let echo: UInt64 = 1 << 62
}

/// Deterministic payload bytes, so every receiver can check what it got byte for byte.
public enum Pattern {
    @inline(__always)
    public static func byte(_ index: Int, seed: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (index &* 131) ^ (seed &* 7919) ^ (index >> 8))
    }
    public static func fill(_ b: UnsafeMutableRawBufferPointer, seed: Int) {
        for i in 0..<b.count { b[i] = byte(i, seed: seed) }
    }
    /// Index of the first wrong byte, or nil.
    public static func firstMismatch(_ b: UnsafeRawBufferPointer, seed: Int) -> Int? {
        for i in 0..<b.count where b[i] != byte(i, seed: seed) { return i }
        return nil
    }
}

/// Writes `text` to a file (replacing it), executable when asked (a script).
public func writeFile(_ path: String, _ text: String, executable: Bool = false) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
    if executable { chmod(path, 0o755) }
}

/// Runs a command to completion and returns its exit status and its output (stdout and stderr).
public func runCapturing(_ path: String, _ arguments: [String], environment: [String: String] = [:]) -> (status: Int32, output: String) {
    func quote(_ s: String) -> String { "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" }
    let env = environment.map { "\($0.key)=\(quote($0.value))" }.joined(separator: " ")
    let command = (env.isEmpty ? "" : "env \(env) ") + ([path] + arguments).map(quote).joined(separator: " ")
    guard let pipe = popen(command + " 2>&1", "r") else { return (-1, "") }
    var output = ""
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), pipe) != nil {
        output += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    let status = pclose(pipe)
    return ((status >> 8) & 0xFF, output)
}

/// Whether a process with this pid still exists (signal 0).
public func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

/// Ends a process that is not our child (a daemonized backend) by pid and waits until it is gone.
public func terminate(pid: Int32, within seconds: Double = 5) -> Bool {
    kill(pid, SIGTERM)
    let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
    while monotonicNanoseconds() < deadline {
        if !processExists(pid) { return true }
        usleep(5_000)
    }
    kill(pid, SIGKILL)
    return !processExists(pid)
}

/// A process's descriptors and what each refers to (/proc/PID/fd), by number.
public func descriptors(of pid: Int32) -> [(fd: Int32, target: String)] {
    var out: [(Int32, String)] = []
    guard let d = opendir("/proc/\(pid)/fd") else { return out }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        guard let fd = Int32(name) else { continue }
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/fd/\(name)", &buf, buf.count - 1)
        out.append((fd, n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"))
    }
    return out.sorted { $0.0 < $1.0 }
}

/// How many descriptors a process's epoll set watches (the `tfd:` lines of its fdinfo), or nil
/// when it has no epoll descriptor.
public func epollWatchCount(of pid: Int32) -> Int? {
    guard let ep = descriptors(of: pid).first(where: { $0.target == "anon_inode:[eventpoll]" }),
          let f = fopen("/proc/\(pid)/fdinfo/\(ep.fd)", "r") else { return nil }
    defer { fclose(f) }
    var count = 0
    var buf = [CChar](repeating: 0, count: 512)
    while fgets(&buf, Int32(buf.count), f) != nil {
        let line = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if line.hasPrefix("tfd:") { count += 1 }
    }
    return count
}

/// Processes (other than this one, and the shells that started them) whose command line
/// contains `text`: to find what a test started and check it is gone, never to kill it.
public func processes(commandLineContaining text: String) -> [Int32] {
    allProcesses().filter { pid in
        guard let cmd = commandLine(of: pid) else { return false }
        return cmd.contains(text) && !cmd.contains("/bin/sh -c")
    }
}

/// Every process's pid but this one's.
public func allProcesses() -> [Int32] {
    var found: [Int32] = []
    guard let d = opendir("/proc") else { return [] }
    defer { closedir(d) }
    while let e = readdir(d) {
        let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        if let pid = Int32(name), pid != getpid() { found.append(pid) }
    }
    return found
}

/// A process's command line as ps shows it (arguments joined by spaces), nil if it is gone.
public func commandLine(of pid: Int32) -> String? {
    guard let f = fopen("/proc/\(pid)/cmdline", "r") else { return nil }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = fread(&buf, 1, buf.count, f)
    fclose(f)
    var bytes = buf[..<n]
    while bytes.last == 0 { bytes.removeLast() }
    return String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
}

/// A process's parent and name (/proc/PID/stat), nil if it is gone.
public func parentAndName(of pid: Int32) -> (parent: Int32, name: String)? {
    guard let f = fopen("/proc/\(pid)/stat", "r") else { return nil }
    var buf = [UInt8](repeating: 0, count: 1024)
    let n = fread(&buf, 1, buf.count, f)
    fclose(f)
    let stat = String(decoding: buf[..<n], as: UTF8.self)
    // "PID (NAME) STATE PPID ...": the name may hold spaces and parentheses; it ends at the last ')'.
    guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
    let rest = stat[stat.index(after: close)...].split(separator: " ")
    guard rest.count > 1, let parent = Int32(rest[1]) else { return nil }
    return (parent, String(stat[stat.index(after: open)..<close]))
}

/// Two emulated VMs for a test: network namespaces joined by a veth pair on a subnet of their
/// own, and a hostfile naming them (two slots each). Names carry the test's pid; `remove()`
/// deletes what was made (the namespaces take their links with them).
public final class EmulatedVMs {
    public let names: [String]
    public let subnet: String
    public let hostfile: String
    let links: [String]

    /// nil when this machine cannot make namespaces (not root, no iproute2).
    public init?() throws {
        let tools: [String] = ["/usr/sbin/ip", "/sbin/ip", "/bin/ip"]
        guard getuid() == 0, tools.contains(where: { access($0, X_OK) == 0 }) else { return nil }
        let tag = "\(getpid() % 100_000)"
        names = ["mxva\(tag)", "mxvb\(tag)"]
        subnet = "10.201.\(getpid() % 200 + 20)"
        hostfile = "/tmp/srtest-cluster-\(getpid())"
        links = ["mxla\(tag)", "mxlb\(tag)"]
        do {
            for vm in names { try Self.sh("ip netns add \(vm) && ip -n \(vm) link set lo up") }
            try Self.sh("ip link add \(links[0]) mtu 9000 type veth peer name \(links[1]) mtu 9000")
            for k in 0..<2 {
                try Self.sh("ip link set \(links[k]) netns \(names[k]) && ip -n \(names[k]) addr add \(subnet).\(k + 1)/24 dev \(links[k]) && ip -n \(names[k]) link set \(links[k]) up")
            }
        } catch {
            remove()
            throw error
        }
        writeFile(hostfile, "# two emulated VMs\n\(names[0]) slots=2\n\(names[1]) slots=2\n")
    }

    /// Sets both ends of the VMs' link to MTU `mtu` (backends started afterwards take it).
    public func setMTU(_ mtu: Int) throws {
        for k in 0..<2 { try Self.sh("ip -n \(names[k]) link set dev \(links[k]) mtu \(mtu)") }
    }

    /// Cuts (`up: false`) or restores VM `k`'s link to the other, as a pulled cable would:
    /// frames in either direction are lost until it is back.
    public func setLink(of k: Int, up: Bool) throws {
        try Self.sh("ip -n \(names[k]) link set \(links[k]) \(up ? "up" : "down")")
    }

    public func remove() {
        for vm in names { _ = runCapturing("/bin/sh", ["-c", "ip netns del \(vm)"]) }
        _ = runCapturing("/bin/sh", ["-c", "ip link del \(links[0]) 2>/dev/null"])
        unlink(hostfile)
    }

    public static func sh(_ command: String) throws {
        let (code, out) = runCapturing("/bin/sh", ["-c", command])
        guard code == 0 else { throw MXError(.system, "\(command): \(out)") }
    }
}
