/// Little-endian encoding of control messages. Control traffic is off the data path, so
/// clarity wins over speed here.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init() { bytes.reserveCapacity(128) }

    public mutating func put<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func put(_ s: String) {
        let u = Array(s.utf8)
        put(UInt32(u.count))
        bytes.append(contentsOf: u)
    }
    public mutating func put(_ b: Bool) { put(UInt8(b ? 1 : 0)) }
    /// Raw bytes, as they are (already encoded fields).
    public mutating func putBytes(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }
}

public struct ByteReader {
    let bytes: [UInt8]
    var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public mutating func get<T: FixedWidthInteger>(_: T.Type = T.self) throws(MXError) -> T {
        let n = MemoryLayout<T>.size
        guard offset + n <= bytes.count else {
            throw MXError(.protocolError, "control message ends early (wanted \(n) bytes at offset \(offset) of \(bytes.count))")
        }
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            for i in 0..<n { dst[i] = bytes[offset + i] }
        }
        offset += n
        return T(littleEndian: v)
    }
    public mutating func getString() throws(MXError) -> String {
        let n = Int(try get(UInt32.self))
        guard n <= bytes.count - offset else {
            throw MXError(.protocolError, "control message string of \(n) bytes overruns the message")
        }
        let s = String(decoding: bytes[offset..<offset + n], as: UTF8.self)
        offset += n
        return s
    }
    public mutating func getBool() throws(MXError) -> Bool { try get(UInt8.self) != 0 }
}

public protocol WireCodable {
    func encode(to w: inout ByteWriter)
    init(from r: inout ByteReader) throws(MXError)
}
