#if canImport(Glibc)
import Glibc
#endif

/// The client side of PMI-1: how a rank learns its rank and size, exchanges business cards
/// through the process manager's key-value space, and meets the others at barriers. Works
/// under swiftrun, MPICH's mpiexec.hydra and Slurm's srun (PMI_FD, or PMI_PORT + PMI_ID), and
/// as a singleton of size 1 when started without any of them.
public final class PMIClient {
    public let rank: Int
    public let size: Int
    public let appnum: Int
    public let kvsname: String
    public let universeSize: Int
    /// False when the program runs alone, without a process manager.
    public let isSingleton: Bool
    let channel: PMILineChannel?
    var singletonKVS: [String: String] = [:]
    public private(set) var isFinalized = false
    /// The longest abort message sent (longer ones are cut): an abort line stays well inside
    /// the 1,024-byte values and 4,096-byte lines process managers take.
    public static let abortMessageMax = 900
    /// Work that must go on while this rank waits for the process manager's answer: called
    /// with the PMI descriptor, it returns once that is readable. A rank with an endpoint sets
    /// it so that its peers on other hosts get acks and resends while it sits in a barrier.
    public var whileWaiting: ((Int32) -> Void)?

    /// Connects using the environment the process manager set.
    public static func fromEnvironment() throws(PMIError) -> PMIClient {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        if let fdText = env("PMI_FD") {
            guard let fd = Int32(fdText), fd >= 0, fcntl(fd, F_GETFD) >= 0 else {
                throw PMIError("PMI_FD=\(fdText) is not an open descriptor of this process")
            }
            let rank = Int(env("PMI_RANK") ?? "") ?? -1
            let size = Int(env("PMI_SIZE") ?? "") ?? -1
            guard rank >= 0, size > 0, rank < size else {
                throw PMIError("PMI_FD is set but PMI_RANK/PMI_SIZE (\(env("PMI_RANK") ?? "unset")/\(env("PMI_SIZE") ?? "unset")) are not a valid rank and size")
            }
            return try PMIClient(channel: PMILineChannel(fd: fd), rank: rank, size: size)
        }
        if let port = env("PMI_PORT") {
            guard let id = env("PMI_ID") else { throw PMIError("PMI_PORT is set but PMI_ID is not") }
            let channel = try connectTCP(port)
            try channel.send(PMIMessage("initack", [("pmiid", id)]))
            let ack = try channel.receive()
            guard ack.command == "initack", ack.rc == 0 else { throw PMIError("the process manager refused pmiid \(id): \(ack)") }
            var settings: [String: String] = [:]
            for _ in 0..<3 {
                let m = try channel.receive()
                guard m.command == "set", let f = m.fields.first else { throw PMIError("expected cmd=set after initack, got \(m)") }
                settings[f.key] = f.value
            }
            guard let rank = settings["rank"].flatMap(Int.init), let size = settings["size"].flatMap(Int.init) else {
                throw PMIError("initack did not give rank and size")
            }
            return try PMIClient(channel: channel, rank: rank, size: size)
        }
        return PMIClient(singleton: ())
    }

    init(singleton: Void) {
        rank = 0; size = 1; appnum = 0; kvsname = "singleton_kvs"; universeSize = 1
        isSingleton = true
        channel = nil
    }

    init(channel: PMILineChannel, rank: Int, size: Int) throws(PMIError) {
        self.channel = channel
        self.rank = rank
        self.size = size
        isSingleton = false
        func call(_ m: PMIMessage, expect: String) throws(PMIError) -> PMIMessage {
            try channel.send(m)
            let r = try channel.receive()
            guard r.command == expect else { throw PMIError("sent \(m.command), got \(r)") }
            guard r.rc == 0 else { throw PMIError("\(m.command) failed: \(r["msg"] ?? r.description)") }
            return r
        }
        _ = try call(PMIMessage("init", [("pmi_version", "1"), ("pmi_subversion", "1")]), expect: "response_to_init")
        _ = try call(PMIMessage("get_maxes"), expect: "maxes")
        appnum = Int(try call(PMIMessage("get_appnum"), expect: "appnum")["appnum"] ?? "0") ?? 0
        kvsname = try call(PMIMessage("get_my_kvsname"), expect: "my_kvsname")["kvsname"] ?? ""
        universeSize = Int(try call(PMIMessage("get_universe_size"), expect: "universe_size")["size"] ?? "") ?? size
    }

    deinit { channel?.close() }

    func call(_ m: PMIMessage, expect: String) throws(PMIError) -> PMIMessage {
        guard let channel else { throw PMIError("no process manager") }
        guard !isFinalized else { throw PMIError("PMI was finalized") }
        try channel.send(m)
        let r = try channel.receive(waiting: whileWaiting)
        guard r.command == expect else { throw PMIError("sent \(m.command), got \(r)") }
        return r
    }

    /// Publishes `value` under `key` (visible to all after the next barrier). No spaces.
    public func put(_ key: String, _ value: String) throws(PMIError) {
        guard !key.contains(" "), !value.contains(" "), !key.isEmpty else {
            throw PMIError("PMI keys and values cannot be empty or contain spaces: \(key)=\(value)")
        }
        if isSingleton { singletonKVS[key] = value; return }
        let r = try call(PMIMessage("put", [("kvsname", kvsname), ("key", key), ("value", value)]), expect: "put_result")
        guard r.rc == 0 else { throw PMIError("put \(key) failed: \(r["msg"] ?? r.description)") }
    }

    /// The value another rank put, or nil.
    public func get(_ key: String) throws(PMIError) -> String? {
        if isSingleton { return singletonKVS[key] }
        let r = try call(PMIMessage("get", [("kvsname", kvsname), ("key", key)]), expect: "get_result")
        return r.rc == 0 ? r["value"] : nil
    }

    /// Waits for every rank.
    public func barrier() throws(PMIError) {
        if isSingleton { return }
        let r = try call(PMIMessage("barrier_in"), expect: "barrier_out")
        guard r.rc == 0 else { throw PMIError("barrier failed: \(r["msg"] ?? r.description)") }
    }

    /// The process manager's `PMI_process_mapping`, e.g. `(vector,(0,2,4))`.
    public func processMapping() throws(PMIError) -> String? { try get("PMI_process_mapping") }

    /// Tells the process manager this rank is done. Idempotent.
    public func finalize() throws(PMIError) {
        guard !isFinalized else { return }
        if !isSingleton { _ = try call(PMIMessage("finalize"), expect: "finalize_ack") }
        isFinalized = true
    }

    /// Asks the process manager to end the whole job with `code`. Does not return.
    public func abort(code: Int32, message: String) -> Never {
        // Alone, nobody else reports it.
        if channel == nil { _ = "\(message)\n".withCString { write(2, $0, strlen($0)) } }
        if let channel, !isFinalized {
            // One line, within what a process manager takes (PMI-1's lines are bounded).
            var text = String(message.map { $0.isNewline ? " " : $0 })
            if text.utf8.count > PMIClient.abortMessageMax {
                text = String(decoding: text.utf8.prefix(PMIClient.abortMessageMax), as: UTF8.self) + "..."
            }
            try? channel.send(PMIMessage("abort", [("exitcode", String(code)), ("message", text)]))
            // The process manager tears the job down; give it a moment to do so.
            var ts = timespec(tv_sec: 2, tv_nsec: 0)
            nanosleep(&ts, nil)
        }
        exit(code)
    }

    /// Connects to `host:port` over TCP, or to `unix:PATH`.
    public static func connect(_ address: String) throws(PMIError) -> PMILineChannel {
        guard address.hasPrefix("unix:") else { return try connectTCP(address) }
        let path = String(address.dropFirst(5))
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PMIError("socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            _ = Glibc.close(fd)
            throw PMIError("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw PMIError("cannot connect to \(path): \(String(cString: strerror(e)))")
        }
        return PMILineChannel(fd: fd)
    }

    public static func connectTCP(_ port: String) throws(PMIError) -> PMILineChannel {
        guard let colon = port.lastIndex(of: ":") else { throw PMIError("PMI_PORT=\(port) is not host:port") }
        let host = String(port[..<colon])
        let service = String(port[port.index(after: colon)...])
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, service, &hints, &res) == 0, let first = res else {
            throw PMIError("cannot resolve PMI_PORT host \(host)")
        }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return PMILineChannel(fd: fd) }
                _ = Glibc.close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw PMIError("cannot connect to the process manager at \(port): \(String(cString: strerror(errno)))")
    }
}
