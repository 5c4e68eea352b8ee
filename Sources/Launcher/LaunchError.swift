/// A launch failure with the words the user sees and the exit code swiftrun ends with
/// (2 for usage errors: bad options, hostfiles, programs). The words may quote what came from
/// outside; `description` shows them escaped (`Visible`), as the terminal gets them.
public struct LaunchError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public let exitCode: Int32

    public init(_ message: String, exitCode: Int32 = 2) {
        self.message = message
        self.exitCode = exitCode
    }

    public var description: String { "swiftrun: \(Visible.text(message))" }
}
