/// What swiftrun reads from outside (the command line, hostfiles, the environment, PMI lines)
/// is counted here, the same way everywhere.

/// A whole number the user gives (a count, seconds), read without ever trapping: in 1...limit,
/// not positive (or not a number), or over the limit (digits too many for an Int included).
enum Count: Equatable {
    case value(Int)
    case notPositive
    case over

    init(_ text: some StringProtocol, limit: Int) {
        if let n = Int(text) {
            self = n < 1 ? .notPositive : n > limit ? .over : .value(n)
            return
        }
        let digits = text.hasPrefix("+") ? Substring(text.dropFirst()) : Substring(text)
        self = !digits.isEmpty && digits.allSatisfy({ $0.isASCII && $0.isNumber }) ? .over : .notPositive
    }
}
