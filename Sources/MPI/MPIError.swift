import MyriXen

/// An MPI failure: the MPI error class it belongs to and what went wrong.
public struct MPIError: Error, CustomStringConvertible, Equatable, Sendable {
    /// MPI's error classes (MPI_ERR_*), those this library reports.
    public enum ErrorClass: String, Sendable {
        case truncate = "MPI_ERR_TRUNCATE"
        /// An argument the call cannot take (a message too long for the channel, say).
        case arg = "MPI_ERR_ARG"
        case rank = "MPI_ERR_RANK"
        case tag = "MPI_ERR_TAG"
        case count = "MPI_ERR_COUNT"
        /// A root that is not a rank of the communicator.
        case root = "MPI_ERR_ROOT"
        /// A buffer too small for what the call puts there (gatherv's counts and displacements, say).
        case buffer = "MPI_ERR_BUFFER"
        case comm = "MPI_ERR_COMM"
        case request = "MPI_ERR_REQUEST"
        case pending = "MPI_ERR_PENDING"
        /// A rank the operation involves is gone: it closed, died, or its host was declared lost.
        case procFailed = "MPI_ERR_PROC_FAILED"
        case other = "MPI_ERR_OTHER"
        case intern = "MPI_ERR_INTERN"
    }

    public let errorClass: ErrorClass
    public let message: String

    public init(_ errorClass: ErrorClass, _ message: String) {
        self.errorClass = errorClass
        self.message = message
    }

    public var description: String { "\(errorClass.rawValue): \(message)" }

    /// The channel layer's failures, in MPI's terms.
    init(_ e: MXError) {
        switch e.code {
        case .requestCompleted, .invalidRequest: self.init(.request, e.message)
        case .closedEndpoint, .notInitialized: self.init(.comm, e.message)
        case .peerClosed: self.init(.procFailed, e.message)
        case .badParameter, .tooManySegments, .badMatchMask: self.init(.arg, e.message)
        default: self.init(.other, e.description)
        }
    }

    /// Whether this is a failure of the job rather than of the call: a rank or host lost, the
    /// channel or the process manager failing underneath. Such errors end the job under the
    /// default error handler.
    var isFailureOfTheJob: Bool { errorClass == .procFailed || errorClass == .other || errorClass == .intern }
}

/// What a communicator does when an operation on it fails (MPI_Comm_set_errhandler). New
/// communicators (dup, split, create, splitByHost) take their parent's.
public enum ErrorHandler: Sendable {
    /// MPI_ERRORS_ARE_FATAL, the default: a failure of the job itself (a rank gone or its
    /// host lost, the backend dead, a connection that cannot be made) ends the whole job at
    /// once: the rank reports it and aborts through its process manager, so no other rank
    /// waits forever. Mistakes of the call (a truncated message, a bad rank or tag, a freed
    /// communicator or request) are thrown as ever: the program's to handle.
    case fatal
    /// MPI_ERRORS_RETURN: every error is thrown, for the program to handle; the job goes on.
    case throwing

    /// The exit code a fatal error aborts the job with.
    public static let fatalExitCode: Int32 = 1
}
