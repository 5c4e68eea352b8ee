/// A launch failure with the words the user sees and the exit code swiftrun ends with
/// (2 for usage errors: bad options, hostfiles, programs).
public struct LaunchError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public let exitCode: Int32

    public init(_ message: String, exitCode: Int32 = 2) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { "swiftrun: \(message)" }
}
