import CMyriXen

/// The region table in an endpoint's protected page. The backend writes it (register,
/// deregister); the endpoint's peers read it to learn where a pull may go, and a pull is
/// served only inside the region it names.
public struct RegionTable {
    public let page: UnsafeMutableRawPointer

    public init(protectedPage: UnsafeMutableRawPointer) { page = protectedPage }

    @inline(__always)
    func entry(_ id: Int) -> UnsafeMutableRawPointer {
        page + ProtectedPage.regionTableOffset + id * ProtectedPage.regionEntrySize
    }

    /// Backend: fills region `id` with a new generation. Returns the generation.
    public func install(id: Int, base: UInt64, length: UInt64) -> UInt32 {
        let e = entry(id)
        let generation = Shm.load(e, ProtectedPage.regionGenerationOffset, as: UInt32.self) &+ 1
        Shm.store(e, ProtectedPage.regionBaseOffset, base)
        Shm.store(e, ProtectedPage.regionLengthOffset, length)
        Shm.store(e, ProtectedPage.regionGenerationOffset, generation)
        cmx_store_release_u32(e + ProtectedPage.regionActiveOffset, 1)
        return generation
    }

    /// Backend: retires region `id`. Pulls naming it fail from now on.
    public func remove(id: Int) {
        cmx_store_release_u32(entry(id) + ProtectedPage.regionActiveOffset, 0)
    }

    public func isActive(_ id: Int) -> Bool {
        cmx_load_acquire_u32(entry(id) + ProtectedPage.regionActiveOffset) != 0
    }

    public func describe(_ id: Int) -> (base: UInt64, length: UInt64, generation: UInt32)? {
        guard isActive(id) else { return nil }
        let e = entry(id)
        return (Shm.load(e, ProtectedPage.regionBaseOffset, as: UInt64.self),
                Shm.load(e, ProtectedPage.regionLengthOffset, as: UInt64.self),
                Shm.load(e, ProtectedPage.regionGenerationOffset, as: UInt32.self))
    }

    /// Puller: the address of `[offset, offset + length)` inside region `id` of generation
    /// `generation`, or nil when the region is gone, of another generation, or too short.
    @inline(__always)
    public static func resolve(page: UnsafeRawPointer, id: UInt32, generation: UInt32,
                               offset: UInt64, length: UInt64) -> UInt64? {
        guard id < UInt32(MXLimits.regionsPerEndpoint) else { return nil }
        let e = page + ProtectedPage.regionTableOffset + Int(id) * ProtectedPage.regionEntrySize
        guard cmx_load_acquire_u32(e + ProtectedPage.regionActiveOffset) != 0,
              Shm.load(e, ProtectedPage.regionGenerationOffset, as: UInt32.self) == generation else { return nil }
        let regionLength = Shm.load(e, ProtectedPage.regionLengthOffset, as: UInt64.self)
        guard offset <= regionLength, length <= regionLength - offset else { return nil }
        return Shm.load(e, ProtectedPage.regionBaseOffset, as: UInt64.self) + offset
    }
}
