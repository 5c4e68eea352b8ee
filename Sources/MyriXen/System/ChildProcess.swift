#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// A child process started with posix_spawn, ended and reaped only by its pid.
public struct ChildProcess: Sendable {
    public let pid: Int32

    /// A child started by other means (its pid), to wait for and signal.
    public init(pid: Int32) { self.pid = pid }

    public enum Outcome: Equatable, Sendable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)
        public var description: String {
            switch self {
            case let .exited(c): "exit code \(c)"
            case let .signalled(s): "signal \(s)"
            }
        }
    }

    /// Starts `path` with `arguments` (argv[1...]); stdio and environment are inherited.
    public static func spawn(_ path: String, _ arguments: [String]) throws(MXError) -> ChildProcess {
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        let pid = cmx_spawn(path, argv, nil)
        guard pid > 0 else { throw systemError("posix_spawn(\(path))") }
        return ChildProcess(pid: pid)
    }

    /// Starts `path` in a process group of its own; the kernel sends it `deathSignal` if this
    /// process dies (so a helper such as a job's backend never outlives its launcher; SIGTERM
    /// lets it clean up first).
    /// With `passing`, the child inherits that descriptor as number `as` (nothing else).
    public static func spawnTied(_ path: String, _ arguments: [String], deathSignal: Int32 = SIGTERM,
                                 passing fd: Int32 = -1, as target: Int32 = -1) throws(MXError) -> ChildProcess {
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { argv.forEach { free($0) } }
        var childErrno: Int32 = 0
        let pid = cmx_spawn_rank(path, argv, environ, nil, -1, -1, -1, fd, target, 0, nil, 0, deathSignal, &childErrno)
        guard pid > 0 else { throw systemError("starting \(path)", childErrno != 0 ? childErrno : errno) }
        return ChildProcess(pid: pid)
    }

    /// Waits for the child to end.
    public func wait() -> Outcome {
        var status: Int32 = 0
        guard cmx_wait(pid, &status, 0) == pid else { return .exited(-1) }
        return Self.outcome(status)
    }

    /// The outcome if the child has ended, else nil (does not block).
    public func poll() -> Outcome? {
        var status: Int32 = 0
        guard cmx_wait(pid, &status, 1) == pid else { return nil }
        return Self.outcome(status)
    }

    /// Waits up to `seconds`; nil if the child is still running then.
    public func wait(seconds: Double) -> Outcome? {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while monotonicNanoseconds() < deadline {
            if let o = poll() { return o }
            usleep(2_000)
        }
        return poll()
    }

    public func signal(_ sig: Int32) { _ = kill(pid, sig) }

    /// A raw wait status as an outcome.
    public static func outcome(_ status: Int32) -> Outcome {
        cmx_exited(status) != 0 ? .exited(cmx_exit_code(status)) : .signalled(cmx_term_signal(status))
    }

    /// Makes the calling process end (SIGKILL) when the process that started it ends, so a
    /// helper process never outlives its parent. `parent` is the pid the parent passed down;
    /// if it is already gone, this process exits at once.
    public static func dieWithParent(_ parent: Int32) {
        if cmx_die_with_parent(SIGKILL, parent) != 0 { exit(3) }
    }

    /// This process's environment, as a dictionary.
    public static func currentEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var e = environ
        while let entry = e.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            e += 1
        }
        return env
    }

    /// The path of the running executable.
    public static func currentExecutable() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }
}
