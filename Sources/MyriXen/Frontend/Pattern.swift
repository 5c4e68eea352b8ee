/// The bytes the ping-pong benchmarks send and check with `--validate` (mx_pingpong over the
/// channel layer, mpi_pingpong over the MPI library). Byte k of the message with seed s is
/// `(31k + 7 + 131s) mod 255 + 1`: never 0, so a cleared buffer that received nothing fails;
/// another seed (an earlier iteration, the other direction) differs in every byte; a shifted
/// copy differs too.
public enum MXPattern {
    @inline(__always)
    public static func byte(_ k: Int, seed: Int) -> UInt8 {
        let k255 = k % 255, s255 = ((seed % 255) + 255) % 255
        return UInt8((31 * k255 + 7 + 131 * s255) % 255 + 1)
    }

    public static func fill(_ buffer: UnsafeMutableRawBufferPointer, seed: Int) {
        for k in 0..<buffer.count { buffer[k] = byte(k, seed: seed) }
    }

    /// The first byte of `buffer` that is not the pattern, nil when every byte is.
    public static func firstMismatch(_ buffer: UnsafeRawBufferPointer, seed: Int) -> Int? {
        for k in 0..<buffer.count where buffer[k] != byte(k, seed: seed) { return k }
        return nil
    }
}
