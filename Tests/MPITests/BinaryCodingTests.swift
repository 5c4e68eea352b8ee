import XCTest
@testable import MPI

/// The object path's encoding: every Codable shape round trips, and damaged bytes are errors.
final class BinaryCodingTests: XCTestCase {
    enum Shape: Codable, Equatable { case circle(radius: Double), polygon([Int]), empty }
    struct Inner: Codable, Equatable { var name: String; var tags: Set<String>; var weight: Float? }
    struct Outer: Codable, Equatable {
        var id: Int
        var small: Int8
        var big: UInt64
        var flag: Bool
        var text: String
        var inner: Inner
        var list: [Inner]
        var table: [String: [Double]]
        var shapes: [Shape]
        var nothing: Int?
        var nested: [[Int?]]
    }

    func sample() -> Outer {
        Outer(id: -42, small: -7, big: .max, flag: true, text: "grüße, 世界 🚀",
              inner: Inner(name: "a", tags: ["x", "y"], weight: 1.5),
              list: [Inner(name: "b", tags: [], weight: nil), Inner(name: "c", tags: ["z"], weight: -0.0)],
              table: ["pi": [3.14159], "empty": []], shapes: [.circle(radius: 2), .polygon([1, 2, 3]), .empty],
              nothing: nil, nested: [[1, nil, 3], [], [nil]])
    }

    func testRoundTrips() throws {
        let v = sample()
        let bytes = try BinaryCoding.encode(v)
        XCTAssertEqual(try BinaryCoding.decode(Outer.self, from: bytes), v)
        XCTAssertEqual(try BinaryCoding.decode([Int].self, from: try BinaryCoding.encode([1, 2, 3])), [1, 2, 3])
        XCTAssertEqual(try BinaryCoding.decode(String.self, from: try BinaryCoding.encode("plain")), "plain")
    }

    func testItIsCompactNotJSON() throws {
        let bytes = try BinaryCoding.encode([Double](repeating: 1.0, count: 100))
        XCTAssertLessThan(bytes.count, 100 * 14, "about 13 bytes a double (tag, length, 8 bytes)")
        XCTAssertNotEqual(bytes.first, UInt8(ascii: "["))
    }

    func testDamagedBytesAreErrorsNotCrashes() throws {
        let bytes = try BinaryCoding.encode(sample())
        for cut in [0, 1, 5, bytes.count / 2, bytes.count - 1] {
            XCTAssertThrowsError(try BinaryCoding.decode(Outer.self, from: Array(bytes.prefix(cut))))
        }
        XCTAssertThrowsError(try BinaryCoding.decode(Outer.self, from: [9, 9, 9]))
        XCTAssertThrowsError(try BinaryCoding.decode(Int.self, from: try BinaryCoding.encode("not a number")))
        XCTAssertThrowsError(try BinaryCoding.decode(Outer.self, from: bytes + [0]), "trailing bytes")
    }
}
