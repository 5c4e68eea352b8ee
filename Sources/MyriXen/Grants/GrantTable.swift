import CMyriXen

/// The backend's grant table: which shared-memory object each grant reference names, which
/// frontend ("domain") may map it, whether writable, and which endpoints' lifetimes it is
/// tied to. Mapping a reference checks all of that; revoking is final.
///
/// The table owns the objects' descriptors (reference-counted across the grants naming them)
/// and closes each one when its last grant is revoked.
public struct GrantTable {
    public struct Grant: Sendable {
        public var fd: Int32
        public var size: Int
        public var grantee: UInt32
        public var writable: Bool
        /// Endpoint instances whose closing revokes this grant.
        public var owners: [UInt64]
    }

    public private(set) var grants: [UInt32: Grant] = [:]
    var objectUses: [Int32: Int] = [:]
    var nextRef: UInt32 = 1
    public private(set) var revokedCount = 0
    public private(set) var refusedMaps = 0

    public init() {}

    public var activeCount: Int { grants.count }

    /// Grants `fd` (of `size` bytes) to `grantee`. The table takes a share of `fd`: call
    /// `release(fd)` for the creator's own share once done granting it.
    public mutating func grant(fd: Int32, size: Int, to grantee: UInt32, writable: Bool, owners: [UInt64]) -> GrantRef {
        // 4 billion grants in one backend's life would wrap; that many would take years.
        let ref = nextRef
        nextRef &+= 1
        grants[ref] = Grant(fd: fd, size: size, grantee: grantee, writable: writable, owners: owners)
        objectUses[fd, default: 0] += 1
        return GrantRef(ref)
    }

    /// Registers the creator's share of an object, so it stays open until `release`.
    public mutating func retain(fd: Int32) { objectUses[fd, default: 0] += 1 }

    /// Drops one share of an object; the last share closes it.
    public mutating func release(fd: Int32) {
        guard let n = objectUses[fd] else { return }
        if n <= 1 {
            objectUses[fd] = nil
            closeDescriptor(fd)
        } else {
            objectUses[fd] = n - 1
        }
    }

    /// Checks a map request. Returns the grant, or the error a frontend gets for a revoked,
    /// foreign or unknown reference.
    public mutating func map(_ ref: GrantRef, by domain: UInt32) -> Result<Grant, MXError> {
        // References are handed out in increasing order and never reused: one below the next
        // that is no longer in the table was revoked.
        if grants[ref.raw] == nil && ref.raw != 0 && ref.raw < nextRef {
            refusedMaps += 1
            return .failure(MXError(.revokedGrant, "\(ref) was revoked (its endpoint closed or its process died)"))
        }
        guard let g = grants[ref.raw] else {
            refusedMaps += 1
            return .failure(MXError(.accessDenied, "\(ref) does not exist"))
        }
        guard g.grantee == domain else {
            refusedMaps += 1
            return .failure(MXError(.accessDenied, "\(ref) is granted to another frontend, not to this one"))
        }
        return .success(g)
    }

    /// Revokes one reference.
    public mutating func revoke(_ ref: GrantRef) {
        guard let g = grants.removeValue(forKey: ref.raw) else { return }
        revokedCount += 1
        release(fd: g.fd)
    }

    /// Revokes every grant tied to endpoint instance `owner`. Returns how many.
    @discardableResult
    public mutating func revoke(owner: UInt64) -> Int {
        let refs = grants.filter { $0.value.owners.contains(owner) }.map(\.key)
        for r in refs { revoke(GrantRef(r)) }
        return refs.count
    }

    /// Revokes every grant made to `grantee` (its frontend went away).
    @discardableResult
    public mutating func revoke(grantee: UInt32) -> Int {
        let refs = grants.filter { $0.value.grantee == grantee }.map(\.key)
        for r in refs { revoke(GrantRef(r)) }
        return refs.count
    }

    /// Bytes of shared memory the live objects hold (their sizes, counted once each).
    public func objectBytes() -> Int {
        var seen: Set<Int32> = []
        var total = 0
        for g in grants.values where seen.insert(g.fd).inserted { total += g.size }
        return total
    }
}
