/// A reduction operation (MPI_Op) over elements of `T`: what reduce, allreduce, scan and the
/// other reducing collectives combine contributions with. Built-in ones come as static members
/// (`.sum`, `.max`, `.bitwiseXor`, `.minloc`, ...) for the element families MPI defines them
/// on; any other is made from a closure, with a commutativity flag.
///
/// Order: `combine(a, b, into: out)` computes `out[i] = a[i] op b[i]`, where `a` holds the
/// contribution of the lower ranks. A non-commutative operation is applied in exactly that rank
/// order by the collectives; a commutative one may be applied in any order. `out` may be `a`
/// or `b` (in place).
///
/// The built-ins are loops over whole buffers, specialized for their element type where they
/// are used (the static members are inlinable): no call per element. Integer sums and products
/// wrap on overflow (MPI leaves overflow undefined; wrapping never traps a rank).
public struct Operation<T: BitwiseCopyable>: @unchecked Sendable {
    /// Whether `a op b == b op a` for all elements (MPI_Op_commutative).
    public let isCommutative: Bool
    /// A name for messages and benchmarks ("sum", "user").
    public let name: String
    /// The function over whole buffers, on raw pointers (count in elements), so the
    /// collectives' schedules, which are not generic, call it as it is: no wrapper per call.
    @usableFromInline let raw: (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void

    @inlinable
    init(builtin name: String, commutative: Bool, raw: @escaping (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer, Int) -> Void) {
        self.isCommutative = commutative
        self.name = name
        self.raw = raw
    }

    /// An operation from a function over whole buffers: `out[i] = a[i] op b[i]` for
    /// `i < count` (`out` may be `a` or `b`).
    @inlinable
    public init(name: String = "user", commutative: Bool,
                buffers body: @escaping (_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, _ out: UnsafeMutablePointer<T>, _ count: Int) -> Void) {
        self.init(builtin: name, commutative: commutative) { a, b, o, n in
            body(a.assumingMemoryBound(to: T.self), b.assumingMemoryBound(to: T.self), o.assumingMemoryBound(to: T.self), n)
        }
    }

    /// The built-ins' closures see typed buffers through this (specialized where they are
    /// used, so they capture nothing).
    @inlinable @inline(__always)
    static func typed(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ o: UnsafeMutableRawPointer)
        -> (UnsafePointer<T>, UnsafePointer<T>, UnsafeMutablePointer<T>) {
        (a.assumingMemoryBound(to: T.self), b.assumingMemoryBound(to: T.self), o.assumingMemoryBound(to: T.self))
    }

    /// An operation from a function of two elements (MPI_Op_create): `op(a, b)` with `a` from
    /// the lower ranks.
    @inlinable
    public init(name: String = "user", commutative: Bool, _ op: @escaping (T, T) -> T) {
        self.init(name: name, commutative: commutative) { a, b, out, n in
            for i in 0..<n { out[i] = op(a[i], b[i]) }
        }
    }

    /// `out[i] = a[i] op b[i]` for every element (`out` may be `a` or `b`).
    @inlinable
    public func combine(_ a: UnsafeBufferPointer<T>, _ b: UnsafeBufferPointer<T>, into out: UnsafeMutableBufferPointer<T>) {
        precondition(a.count == b.count && b.count == out.count, "combine needs buffers of one length")
        guard let pa = a.baseAddress, let pb = b.baseAddress, let po = out.baseAddress else { return }
        raw(pa, pb, po, out.count)
    }

    /// The elements of `a op b` (a convenience for tests and small data).
    @inlinable
    public func apply(_ a: [T], _ b: [T]) -> [T] {
        precondition(a.count == b.count, "apply needs arrays of one length")
        var out = b
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { combine(pa, pb, into: $0) }
            }
        }
        return out
    }
}

// MARK: built-ins

extension Operation where T: FixedWidthInteger {
    @inlinable public static var sum: Operation { Operation(builtin: "sum", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] &+ b[i] } } }
    @inlinable public static var product: Operation { Operation(builtin: "product", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] &* b[i] } } }
    @inlinable public static var bitwiseAnd: Operation { Operation(builtin: "bitwiseAnd", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] & b[i] } } }
    @inlinable public static var bitwiseOr: Operation { Operation(builtin: "bitwiseOr", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] | b[i] } } }
    @inlinable public static var bitwiseXor: Operation { Operation(builtin: "bitwiseXor", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] ^ b[i] } } }
    /// Logical operations on integers, as C's: nonzero is true; the result is 0 or 1.
    @inlinable public static var logicalAnd: Operation { Operation(builtin: "logicalAnd", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] != 0 && b[i] != 0 ? 1 : 0 } } }
    @inlinable public static var logicalOr: Operation { Operation(builtin: "logicalOr", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] != 0 || b[i] != 0 ? 1 : 0 } } }
    @inlinable public static var logicalXor: Operation { Operation(builtin: "logicalXor", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = (a[i] != 0) != (b[i] != 0) ? 1 : 0 } } }
}

extension Operation where T: BinaryFloatingPoint {
    @inlinable public static var sum: Operation { Operation(builtin: "sum", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] + b[i] } } }
    @inlinable public static var product: Operation { Operation(builtin: "product", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] * b[i] } } }
}

extension Operation where T: Comparable {
    /// The smaller (larger) of each pair, by `<`; on a tie (or where `<` says neither, as with
    /// a NaN) the lower ranks' element.
    @inlinable public static var min: Operation { Operation(builtin: "min", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = b[i] < a[i] ? b[i] : a[i] } } }
    @inlinable public static var max: Operation { Operation(builtin: "max", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = b[i] > a[i] ? b[i] : a[i] } } }
}

extension Operation where T == Bool {
    @inlinable public static var logicalAnd: Operation { Operation(builtin: "logicalAnd", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] && b[i] } } }
    @inlinable public static var logicalOr: Operation { Operation(builtin: "logicalOr", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] || b[i] } } }
    @inlinable public static var logicalXor: Operation { Operation(builtin: "logicalXor", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] != b[i] } } }
}

extension Operation where T: SIMD, T.Scalar: FixedWidthInteger {
    @inlinable public static var sum: Operation { Operation(builtin: "sum", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] &+ b[i] } } }
    @inlinable public static var product: Operation { Operation(builtin: "product", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] &* b[i] } } }
    @inlinable public static var min: Operation { Operation(builtin: "min", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = pointwiseMin(a[i], b[i]) } } }
    @inlinable public static var max: Operation { Operation(builtin: "max", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = pointwiseMax(a[i], b[i]) } } }
    @inlinable public static var bitwiseAnd: Operation { Operation(builtin: "bitwiseAnd", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] & b[i] } } }
    @inlinable public static var bitwiseOr: Operation { Operation(builtin: "bitwiseOr", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] | b[i] } } }
    @inlinable public static var bitwiseXor: Operation { Operation(builtin: "bitwiseXor", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] ^ b[i] } } }
}

extension Operation where T: SIMD, T.Scalar: BinaryFloatingPoint {
    @inlinable public static var sum: Operation { Operation(builtin: "sum", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] + b[i] } } }
    @inlinable public static var product: Operation { Operation(builtin: "product", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = a[i] * b[i] } } }
    @inlinable public static var min: Operation { Operation(builtin: "min", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = pointwiseMin(a[i], b[i]) } } }
    @inlinable public static var max: Operation { Operation(builtin: "max", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o); for i in 0..<n { o[i] = pointwiseMax(a[i], b[i]) } } }
}

/// A value with the rank (or index) it came from: the element of MPI's MINLOC and MAXLOC
/// (MPI_DOUBLE_INT and friends).
public struct Located<Value: Comparable & BitwiseCopyable>: BitwiseCopyable, Equatable {
    public var value: Value
    public var location: Int
    public init(_ value: Value, at location: Int) {
        self.value = value
        self.location = location
    }
}

extension Operation {
    /// The smallest value and where it is; on a tie, the lower location (MPI_MINLOC).
    @inlinable
    public static func minloc<V>() -> Operation where T == Located<V> {
        Operation(builtin: "minloc", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o);
            for i in 0..<n {
                let x = a[i], y = b[i]
                o[i] = y.value < x.value || (y.value == x.value && y.location < x.location) ? y : x
            }
        }
    }

    /// The largest value and where it is; on a tie, the lower location (MPI_MAXLOC).
    @inlinable
    public static func maxloc<V>() -> Operation where T == Located<V> {
        Operation(builtin: "maxloc", commutative: true) { a, b, o, n in let (a, b, o) = typed(a, b, o);
            for i in 0..<n {
                let x = a[i], y = b[i]
                o[i] = y.value > x.value || (y.value == x.value && y.location < x.location) ? y : x
            }
        }
    }
}
