/// A compact binary encoding for Codable values (the object path of send/receive; not JSON).
///
/// A value encodes to a tree, written as tagged, length-prefixed nodes: numbers in little
/// endian at their width, strings as UTF-8, keyed containers as (key, value) pairs so decoding
/// finds keys in any order, unkeyed ones as sequences.
enum Node: Equatable {
    case null
    case bytes([UInt8])       // a primitive: its little-endian or UTF-8 bytes
    case keyed([(String, Node)])
    case unkeyed([Node])

    static func == (a: Node, b: Node) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bytes(x), .bytes(y)): x == y
        case let (.unkeyed(x), .unkeyed(y)): x == y
        case let (.keyed(x), .keyed(y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    func write(to out: inout [UInt8]) {
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { out.append(contentsOf: $0) } }
        switch self {
        case .null: out.append(0)
        case let .bytes(b): out.append(1); u32(b.count); out += b
        case let .keyed(pairs):
            out.append(2); u32(pairs.count)
            for (k, v) in pairs { let u = Array(k.utf8); u32(u.count); out += u; v.write(to: &out) }
        case let .unkeyed(items):
            out.append(3); u32(items.count)
            for v in items { v.write(to: &out) }
        }
    }

    static func read(_ b: [UInt8], _ i: inout Int, depth: Int = 0) throws(MPIError) -> Node {
        func bad(_ why: String) -> MPIError { MPIError(.other, "malformed object encoding at byte \(i): \(why)") }
        func u32() throws(MPIError) -> Int {
            guard i + 4 <= b.count else { throw bad("ends early") }
            let v = Int(UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24)
            i += 4
            return v
        }
        func bytes(_ n: Int) throws(MPIError) -> [UInt8] {
            guard n >= 0, i + n <= b.count else { throw bad("a length of \(n) runs past the end") }
            defer { i += n }
            return Array(b[i..<i + n])
        }
        guard depth < 512 else { throw bad("nested too deep") }
        guard i < b.count else { throw bad("ends early") }
        let tag = b[i]
        i += 1
        switch tag {
        case 0: return .null
        case 1: return .bytes(try bytes(try u32()))
        case 2:
            let n = try u32()
            guard n <= b.count else { throw bad("\(n) keys") }
            var pairs: [(String, Node)] = []
            for _ in 0..<n {
                let key = String(decoding: try bytes(try u32()), as: UTF8.self)
                pairs.append((key, try read(b, &i, depth: depth + 1)))
            }
            return .keyed(pairs)
        case 3:
            let n = try u32()
            guard n <= b.count else { throw bad("\(n) items") }
            var items: [Node] = []
            for _ in 0..<n { items.append(try read(b, &i, depth: depth + 1)) }
            return .unkeyed(items)
        default: throw bad("unknown node \(tag)")
        }
    }
}

/// Encodes a Codable value to bytes.
public enum BinaryCoding {
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let e = TreeEncoder()
        try value.encode(to: e)
        var out: [UInt8] = []
        e.root.node.write(to: &out)
        return out
    }

    public static func decode<T: Decodable>(_: T.Type, from bytes: [UInt8]) throws -> T {
        var i = 0
        let node = try Node.read(bytes, &i)
        guard i == bytes.count else { throw MPIError(.other, "malformed object encoding: \(bytes.count - i) bytes left over") }
        return try T(from: TreeDecoder(node: node, codingPath: []))
    }
}

// MARK: encoding

class Box { var node: Node = .null; init() {} }

final class TreeEncoder: Encoder {
    let root: Box
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] = [:]
    init(box: Box = Box(), codingPath: [CodingKey] = []) { root = box; self.codingPath = codingPath }

    func container<K: CodingKey>(keyedBy _: K.Type) -> KeyedEncodingContainer<K> {
        if case .keyed = root.node {} else { root.node = .keyed([]) }
        return KeyedEncodingContainer(KeyedEnc<K>(box: root, codingPath: codingPath))
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .unkeyed = root.node {} else { root.node = .unkeyed([]) }
        return UnkeyedEnc(box: root, codingPath: codingPath)
    }
    func singleValueContainer() -> SingleValueEncodingContainer { SingleEnc(box: root, codingPath: codingPath) }
}

func primitive<T: FixedWidthInteger>(_ v: T) -> Node { withUnsafeBytes(of: v.littleEndian) { .bytes(Array($0)) } }

/// Encodes one value into a fresh node (primitives directly, others through their encode).
func encodeNode<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws -> Node {
    switch value {
    case let v as String: return .bytes(Array(v.utf8))
    case let v as Bool: return .bytes([v ? 1 : 0])
    case let v as Double: return primitive(v.bitPattern)
    case let v as Float: return primitive(v.bitPattern)
    case let v as Int: return primitive(Int64(v))
    case let v as UInt: return primitive(UInt64(v))
    case let v as Int8: return primitive(v)
    case let v as Int16: return primitive(v)
    case let v as Int32: return primitive(v)
    case let v as Int64: return primitive(v)
    case let v as UInt8: return primitive(v)
    case let v as UInt16: return primitive(v)
    case let v as UInt32: return primitive(v)
    case let v as UInt64: return primitive(v)
    default:
        let box = Box()
        try value.encode(to: TreeEncoder(box: box, codingPath: codingPath))
        return box.node
    }
}

struct KeyedEnc<K: CodingKey>: KeyedEncodingContainerProtocol {
    let box: Box
    var codingPath: [CodingKey]
    func append(_ key: K, _ node: Node) {
        if case var .keyed(pairs) = box.node { pairs.append((key.stringValue, node)); box.node = .keyed(pairs) }
    }
    mutating func encodeNil(forKey key: K) throws { append(key, .null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: K) throws { append(key, try encodeNode(value, codingPath: codingPath + [key])) }
    mutating func nestedContainer<NK: CodingKey>(keyedBy _: NK.Type, forKey key: K) -> KeyedEncodingContainer<NK> {
        let inner = Box()
        inner.node = .keyed([])
        return KeyedEncodingContainer(KeyedEnc<NK>(box: LinkedBox(parent: box, key: key.stringValue, inner: inner), codingPath: codingPath + [key]))
    }
    mutating func nestedUnkeyedContainer(forKey key: K) -> UnkeyedEncodingContainer {
        let inner = Box()
        inner.node = .unkeyed([])
        return UnkeyedEnc(box: LinkedBox(parent: box, key: key.stringValue, inner: inner), codingPath: codingPath + [key])
    }
    mutating func superEncoder() -> Encoder { superEncoder(forKey: K(stringValue: "super")!) }
    mutating func superEncoder(forKey key: K) -> Encoder {
        let inner = Box()
        return TreeEncoder(box: LinkedBox(parent: box, key: key.stringValue, inner: inner), codingPath: codingPath + [key])
    }
}

/// A nested container's box, which writes itself back into its parent on every change.
final class LinkedBox: Box {
    let parent: Box
    let key: String?
    let index: Int?
    init(parent: Box, key: String, inner: Box) {
        self.parent = parent; self.key = key; index = nil
        super.init()
        node = inner.node
        sync()
    }
    init(parent: Box, index: Int, inner: Box) {
        self.parent = parent; key = nil; self.index = index
        super.init()
        node = inner.node
        sync()
    }
    override var node: Node { didSet { sync() } }
    func sync() {
        switch parent.node {
        case var .keyed(pairs):
            if let k = key {
                if let at = pairs.lastIndex(where: { $0.0 == k }) { pairs[at].1 = node } else { pairs.append((k, node)) }
                parent.node = .keyed(pairs)
            }
        case var .unkeyed(items):
            if let at = index {
                if at < items.count { items[at] = node } else { items.append(node) }
                parent.node = .unkeyed(items)
            }
        default: break
        }
    }
}

struct UnkeyedEnc: UnkeyedEncodingContainer {
    let box: Box
    var codingPath: [CodingKey]
    var count: Int { if case let .unkeyed(items) = box.node { items.count } else { 0 } }
    func append(_ node: Node) { if case var .unkeyed(items) = box.node { items.append(node); box.node = .unkeyed(items) } }
    mutating func encodeNil() throws { append(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { append(try encodeNode(value, codingPath: codingPath)) }
    mutating func nestedContainer<NK: CodingKey>(keyedBy _: NK.Type) -> KeyedEncodingContainer<NK> {
        let inner = Box()
        inner.node = .keyed([])
        return KeyedEncodingContainer(KeyedEnc<NK>(box: LinkedBox(parent: box, index: count, inner: inner), codingPath: codingPath))
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let inner = Box()
        inner.node = .unkeyed([])
        return UnkeyedEnc(box: LinkedBox(parent: box, index: count, inner: inner), codingPath: codingPath)
    }
    mutating func superEncoder() -> Encoder { TreeEncoder(box: LinkedBox(parent: box, index: count, inner: Box()), codingPath: codingPath) }
}

struct SingleEnc: SingleValueEncodingContainer {
    let box: Box
    var codingPath: [CodingKey]
    mutating func encodeNil() throws { box.node = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { box.node = try encodeNode(value, codingPath: codingPath) }
}

// MARK: decoding

struct TreeDecoder: Decoder {
    let node: Node
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<K: CodingKey>(keyedBy _: K.Type) throws -> KeyedDecodingContainer<K> {
        guard case let .keyed(pairs) = node else { throw mismatch("a keyed container") }
        return KeyedDecodingContainer(KeyedDec<K>(pairs: Dictionary(pairs, uniquingKeysWith: { _, b in b }), codingPath: codingPath))
    }
    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case let .unkeyed(items) = node else { throw mismatch("an unkeyed container") }
        return UnkeyedDec(items: items, codingPath: codingPath)
    }
    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleDec(node: node, codingPath: codingPath) }
    func mismatch(_ what: String) -> DecodingError {
        .typeMismatch(Any.self, .init(codingPath: codingPath, debugDescription: "expected \(what)"))
    }
}

func decodeNode<T: Decodable>(_: T.Type, _ node: Node, codingPath: [CodingKey]) throws -> T {
    func raw(_ width: Int) throws -> [UInt8] {
        guard case let .bytes(b) = node, b.count == width else {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath, debugDescription: "expected \(width) bytes"))
        }
        return b
    }
    func int<I: FixedWidthInteger>(_: I.Type) throws -> I {
        let b = try raw(MemoryLayout<I>.size)
        var v: I = 0
        withUnsafeMutableBytes(of: &v) { for k in 0..<b.count { $0[k] = b[k] } }
        return I(littleEndian: v)
    }
    switch T.self {
    case is String.Type:
        guard case let .bytes(b) = node else { throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath, debugDescription: "expected a string")) }
        return String(decoding: b, as: UTF8.self) as! T
    case is Bool.Type: return (try raw(1)[0] != 0) as! T
    case is Double.Type: return Double(bitPattern: try int(UInt64.self)) as! T
    case is Float.Type: return Float(bitPattern: try int(UInt32.self)) as! T
    case is Int.Type:
        let v = try int(Int64.self)
        guard let x = Int(exactly: v) else { throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "\(v) does not fit Int")) }
        return x as! T
    case is UInt.Type: return UInt(try int(UInt64.self)) as! T
    case is Int8.Type: return try int(Int8.self) as! T
    case is Int16.Type: return try int(Int16.self) as! T
    case is Int32.Type: return try int(Int32.self) as! T
    case is Int64.Type: return try int(Int64.self) as! T
    case is UInt8.Type: return try int(UInt8.self) as! T
    case is UInt16.Type: return try int(UInt16.self) as! T
    case is UInt32.Type: return try int(UInt32.self) as! T
    case is UInt64.Type: return try int(UInt64.self) as! T
    default: return try T(from: TreeDecoder(node: node, codingPath: codingPath))
    }
}

struct KeyedDec<K: CodingKey>: KeyedDecodingContainerProtocol {
    let pairs: [String: Node]
    var codingPath: [CodingKey]
    var allKeys: [K] { pairs.keys.compactMap { K(stringValue: $0) } }
    func contains(_ key: K) -> Bool { pairs[key.stringValue] != nil }
    func node(_ key: K) throws -> Node {
        guard let n = pairs[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for \(key.stringValue)"))
        }
        return n
    }
    func decodeNil(forKey key: K) throws -> Bool { try node(key) == .null }
    func decode<T: Decodable>(_ type: T.Type, forKey key: K) throws -> T { try decodeNode(type, try node(key), codingPath: codingPath + [key]) }
    func nestedContainer<NK: CodingKey>(keyedBy t: NK.Type, forKey key: K) throws -> KeyedDecodingContainer<NK> {
        try TreeDecoder(node: try node(key), codingPath: codingPath + [key]).container(keyedBy: t)
    }
    func nestedUnkeyedContainer(forKey key: K) throws -> UnkeyedDecodingContainer {
        try TreeDecoder(node: try node(key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    func superDecoder() throws -> Decoder { TreeDecoder(node: pairs["super"] ?? .null, codingPath: codingPath) }
    func superDecoder(forKey key: K) throws -> Decoder { TreeDecoder(node: try node(key), codingPath: codingPath + [key]) }
}

struct UnkeyedDec: UnkeyedDecodingContainer {
    let items: [Node]
    var codingPath: [CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }
    mutating func next() throws -> Node {
        guard !isAtEnd else { throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "no more items")) }
        defer { currentIndex += 1 }
        return items[currentIndex]
    }
    mutating func decodeNil() throws -> Bool {
        if !isAtEnd, items[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeNode(type, try next(), codingPath: codingPath) }
    mutating func nestedContainer<NK: CodingKey>(keyedBy t: NK.Type) throws -> KeyedDecodingContainer<NK> {
        try TreeDecoder(node: try next(), codingPath: codingPath).container(keyedBy: t)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        try TreeDecoder(node: try next(), codingPath: codingPath).unkeyedContainer()
    }
    mutating func superDecoder() throws -> Decoder { TreeDecoder(node: try next(), codingPath: codingPath) }
}

struct SingleDec: SingleValueDecodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    func decodeNil() -> Bool { node == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeNode(type, node, codingPath: codingPath) }
}
