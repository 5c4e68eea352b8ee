import MyriXen

/// An MPI failure: the MPI error class it belongs to and what went wrong.
public struct MPIError: Error, CustomStringConvertible, Equatable, Sendable {
    /// MPI's error classes (MPI_ERR_*), those this library reports.
    public enum ErrorClass: String, Sendable {
        case truncate = "MPI_ERR_TRUNCATE"
        case rank = "MPI_ERR_RANK"
        case tag = "MPI_ERR_TAG"
        case count = "MPI_ERR_COUNT"
        case comm = "MPI_ERR_COMM"
        case request = "MPI_ERR_REQUEST"
        case pending = "MPI_ERR_PENDING"
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
        default: self.init(.other, e.description)
        }
    }
}
