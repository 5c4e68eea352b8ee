import XCTest
import MPI

/// The reduction operations, element by element against what Swift computes directly.
final class OperationTests: XCTestCase {
    func testIntegerOperationsOfEveryWidth() {
        func check<I: FixedWidthInteger & BitwiseCopyable>(_: I.Type) {
            let a: [I] = [0, 1, I.max, 5, 12], b: [I] = [0, 3, 1, 0, 10]
            XCTAssertEqual(Operation<I>.sum.apply(a, b), zip(a, b).map { $0 &+ $1 }, "\(I.self) sum wraps, never traps")
            XCTAssertEqual(Operation<I>.product.apply(a, b), zip(a, b).map { $0 &* $1 })
            XCTAssertEqual(Operation<I>.min.apply(a, b), zip(a, b).map { Swift.min($0, $1) })
            XCTAssertEqual(Operation<I>.max.apply(a, b), zip(a, b).map { Swift.max($0, $1) })
            XCTAssertEqual(Operation<I>.bitwiseAnd.apply(a, b), zip(a, b).map { $0 & $1 })
            XCTAssertEqual(Operation<I>.bitwiseOr.apply(a, b), zip(a, b).map { $0 | $1 })
            XCTAssertEqual(Operation<I>.bitwiseXor.apply(a, b), zip(a, b).map { $0 ^ $1 })
            XCTAssertEqual(Operation<I>.logicalAnd.apply(a, b), [0, 1, 1, 0, 1])
            XCTAssertEqual(Operation<I>.logicalOr.apply(a, b), [0, 1, 1, 1, 1])
            XCTAssertEqual(Operation<I>.logicalXor.apply(a, b), [0, 0, 0, 1, 0])
        }
        check(Int8.self); check(UInt8.self); check(Int16.self); check(UInt16.self)
        check(Int32.self); check(UInt32.self); check(Int64.self); check(UInt64.self)
        check(Int.self); check(UInt.self)
        XCTAssertEqual(Operation<Int8>.min.apply([-128], [127]), [-128], "signed order")
    }

    func testFloatingPointBoolAndSIMD() {
        XCTAssertEqual(Operation<Double>.sum.apply([0.5, -1], [0.25, 1]), [0.75, 0])
        XCTAssertEqual(Operation<Float>.product.apply([3, -2], [0.5, 4]), [1.5, -8])
        XCTAssertEqual(Operation<Double>.max.apply([1, -.infinity], [2, -5]), [2, -5])
        XCTAssertEqual(Operation<Bool>.logicalAnd.apply([true, true, false], [true, false, false]), [true, false, false])
        XCTAssertEqual(Operation<Bool>.logicalOr.apply([true, false, false], [false, false, true]), [true, false, true])
        XCTAssertEqual(Operation<Bool>.logicalXor.apply([true, true], [false, true]), [true, false])
        let v = SIMD4<Float>(1, 5, -2, 0), w = SIMD4<Float>(3, 2, -7, 0)
        XCTAssertEqual(Operation<SIMD4<Float>>.sum.apply([v], [w]), [v + w])
        XCTAssertEqual(Operation<SIMD4<Float>>.min.apply([v], [w]), [SIMD4<Float>(1, 2, -7, 0)])
        XCTAssertEqual(Operation<SIMD4<Float>>.max.apply([v], [w]), [SIMD4<Float>(3, 5, -2, 0)])
        let p = SIMD2<Int32>(.max, 6), q = SIMD2<Int32>(1, 3)
        XCTAssertEqual(Operation<SIMD2<Int32>>.sum.apply([p], [q]), [p &+ q])
        XCTAssertEqual(Operation<SIMD2<Int32>>.bitwiseXor.apply([p], [q]), [p ^ q])
    }

    func testMinlocAndMaxlocPreferTheLowerLocationOnATie() {
        let a = [Located(3.0, at: 0), Located(1.0, at: 4), Located(2.0, at: 1)]
        let b = [Located(3.0, at: 2), Located(0.5, at: 5), Located(2.0, at: 0)]
        XCTAssertEqual(Operation<Located<Double>>.minloc().apply(a, b), [Located(3.0, at: 0), Located(0.5, at: 5), Located(2.0, at: 0)])
        XCTAssertEqual(Operation<Located<Double>>.maxloc().apply(a, b), [Located(3.0, at: 0), Located(1.0, at: 4), Located(2.0, at: 0)])
        XCTAssertTrue(Operation<Located<Int>>.minloc().isCommutative)
    }

    func testUserOperationsKeepRankOrderAndMayWorkInPlace() {
        // 2x2 matrix product: not commutative; a (the lower ranks) goes first.
        struct M: BitwiseCopyable, Equatable { var a, b, c, d: Int }
        let mul = Operation<M>(commutative: false) { x, y in
            M(a: x.a * y.a + x.b * y.c, b: x.a * y.b + x.b * y.d, c: x.c * y.a + x.d * y.c, d: x.c * y.b + x.d * y.d)
        }
        XCTAssertFalse(mul.isCommutative)
        XCTAssertEqual(mul.name, "user")
        let x = M(a: 1, b: 1, c: 0, d: 1), y = M(a: 1, b: 0, c: 1, d: 1)
        XCTAssertEqual(mul.apply([x], [y]), [M(a: 2, b: 1, c: 1, d: 1)])
        XCTAssertEqual(mul.apply([y], [x]), [M(a: 1, b: 1, c: 1, d: 2)])
        // In place: the result over the second operand.
        let left = [1, 2, 3]
        var right = [10, 20, 30]
        let sub = Operation<Int>(name: "minus", commutative: false) { $0 - $1 }
        left.withUnsafeBufferPointer { l in
            right.withUnsafeMutableBufferPointer { r in sub.combine(l, UnsafeBufferPointer(r), into: r) }
        }
        XCTAssertEqual(right, [-9, -18, -27])
        XCTAssertEqual(Operation<Int>.sum.apply([], []), [], "no elements, nothing to do")
    }
}
