#if canImport(Glibc)
import Glibc
#endif
import Bootstrap
import MyriXen

/// The MPI library: `let mpi = try MPI.initialize(); defer { mpi.finalize() }`.
public enum MPI {
    /// Starts MPI in this process (MPI_Init): PMI-1 from swiftrun, mpiexec.hydra or srun, or a
    /// singleton without a launcher. Initializing twice is an error; use `MPIEnvironment.current`.
    public static func initialize() throws(MPIError) -> MPIEnvironment {
        guard MPIEnvironment.state.withLock({ $0 == .fresh }) else {
            throw MPIError(.other, "MPI is already initialized (or was finalized); initialize once per process")
        }
        try Selection.configure(from: ChildProcess.currentEnvironment())
        let world: MXWorld
        do { world = try MXWorld.bootstrap() } catch let e as MXError {
            throw MPIError(e)
        } catch {
            throw MPIError(.other, "MPI could not start: \(error)")
        }
        MPIEnvironment.state.withLock { $0 = .running }
        return MPIEnvironment(world)
    }

    /// Runs `body` between initialize and finalize.
    public static func run<R>(_ body: (Communicator) throws -> R) throws -> R {
        let mpi = try initialize()
        defer { mpi.finalize() }
        return try body(mpi.world)
    }

    /// The library's version (MPI_Get_library_version).
    public static let libraryVersion = "MyriXen MPI 0.1 (Swift, on the MyriXen channel layer; MPI-3.1 point-to-point subset)"
}

/// An initialized MPI: the world and self communicators, time, the processor name.
public final class MPIEnvironment {
    enum State { case fresh, running, finalized }
    static let state = Locked(State.fresh)

    let bootstrap: MXWorld
    public let world: Communicator
    public let selfComm: Communicator
    public private(set) var isFinalized = false

    init(_ w: MXWorld) {
        bootstrap = w
        let contexts = ContextIDs()
        let engine = CollectiveEngine(endpoint: w.endpoint)
        world = Communicator(world: w, context: contexts.world, ranks: Array(0..<w.size), myRank: w.rank, contexts: contexts,
                             engine: engine)
        selfComm = Communicator(world: w, context: contexts.selfComm, ranks: [w.rank], myRank: 0, contexts: contexts,
                                engine: engine)
    }

    /// Ends MPI (MPI_Finalize): a barrier with every rank, then PMI finalize. Idempotent.
    public func finalize() {
        guard !isFinalized else { return }
        isFinalized = true
        try? bootstrap.finalize()
        MPIEnvironment.state.withLock { $0 = .finalized }
    }

    /// Seconds since an arbitrary point in the past (MPI_Wtime).
    public static func wtime() -> Double { Double(monotonicNanoseconds()) / 1e9 }
    /// The resolution of `wtime` in seconds (MPI_Wtick).
    public static var wtick: Double {
        var ts = timespec()
        clock_getres(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// This host's name (MPI_Get_processor_name), as its backend is named: the kernel's host
    /// name, or for a host swiftrun reached through an agent (an emulated VM, an ssh host, a
    /// Slurm node) its name in the hostfile, so ranks of different VMs tell them apart.
    public var processorName: String { bootstrap.context.hostname }

    /// Ends the whole job with `code` (MPI_Abort). Does not return.
    public func abort(code: Int32, message: String = "") -> Never {
        bootstrap.pmi.abort(code: code, message: message.isEmpty ? "MPI_Abort(\(code))" : message)
    }
}

/// A value behind a lock (the only global state: whether MPI was initialized).
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private var mutex = pthread_mutex_t()
    init(_ v: Value) { value = v; pthread_mutex_init(&mutex, nil) }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body(&value)
    }
}
