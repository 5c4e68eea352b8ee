/// MX matching, free of any transport: posted receives and unexpected messages, each a FIFO.
///
/// A message with match info `m` matches a receive `(info, mask)` when `(m & mask) == info`.
/// Receives are tried in the order they were posted; an arriving message takes the first one
/// that fits, so messages of one sender, which arrive in send order, match in send order.
/// A new receive first looks through the unexpected messages in arrival order.
///
/// Identifiers are opaque `Int32`s chosen by the caller (request and unexpected-message slots).
public struct MatchEngine {
    @usableFromInline struct Node {
        var id: Int32
        var matchInfo: UInt64
        var mask: UInt64
        var next: Int32
        var prev: Int32
        var isPostedReceive: Bool
    }

    @usableFromInline var nodes: SlotPool<Node>
    @usableFromInline var postedHead: Int32 = -1
    @usableFromInline var postedTail: Int32 = -1
    @usableFromInline var unexpectedHead: Int32 = -1
    @usableFromInline var unexpectedTail: Int32 = -1
    public private(set) var postedCount = 0
    public private(set) var unexpectedCount = 0

    public init(capacity: Int = 256) {
        nodes = SlotPool(capacity: capacity, blank: Node(id: -1, matchInfo: 0, mask: 0, next: -1, prev: -1, isPostedReceive: false))
    }

    public mutating func destroy() { nodes.destroy() }

    /// Whether `matchInfo` and `mask` form a valid receive (no bits outside the mask).
    @inline(__always)
    public static func isValid(matchInfo: UInt64, mask: UInt64) -> Bool {
        matchInfo & ~mask == 0
    }

    // MARK: receives

    public enum PostResult: Equatable {
        /// An unexpected message fitted; it is removed from the unexpected queue.
        case matchedUnexpected(Int32)
        /// The receive is queued; keep the ticket to cancel it.
        case posted(ticket: Int32)
    }

    /// Posts a receive. If an unexpected message already fits, it is removed from the
    /// unexpected queue and returned, and the receive is not queued.
    @inline(__always)
    public mutating func post(receive id: Int32, matchInfo: UInt64, mask: UInt64) -> PostResult {
        if unexpectedHead >= 0, let u = takeUnexpected(matchInfo: matchInfo, mask: mask) {
            return .matchedUnexpected(u)
        }
        let n = nodes.allocate()
        nodes[n].pointee = Node(id: id, matchInfo: matchInfo, mask: mask, next: -1, prev: postedTail, isPostedReceive: true)
        if postedTail >= 0 { nodes[postedTail].pointee.next = n } else { postedHead = n }
        postedTail = n
        postedCount += 1
        return .posted(ticket: n)
    }

    /// An arriving message: returns the posted receive it matches (now removed), or nil, in
    /// which case the caller stores the message and calls `enqueueUnexpected`.
    @inline(__always)
    public mutating func arrive(matchInfo m: UInt64) -> Int32? {
        var n = postedHead
        while n >= 0 {
            let node = nodes[n].pointee
            if m & node.mask == node.matchInfo {
                unlinkPosted(n)
                return node.id
            }
            n = node.next
        }
        return nil
    }

    /// Removes a posted receive that has not matched yet. False if it is not posted (any more).
    public mutating func cancel(receive id: Int32, ticket n: Int32) -> Bool {
        guard nodes.isAllocated(n), nodes[n].pointee.id == id, nodes[n].pointee.isPostedReceive else {
            return false
        }
        unlinkPosted(n)
        return true
    }

    @inline(__always) @usableFromInline
    mutating func unlinkPosted(_ n: Int32) {
        let node = nodes[n].pointee
        if node.prev >= 0 { nodes[node.prev].pointee.next = node.next } else { postedHead = node.next }
        if node.next >= 0 { nodes[node.next].pointee.prev = node.prev } else { postedTail = node.prev }
        nodes.free(n)
        postedCount -= 1
    }

    // MARK: unexpected messages

    /// Queues an unexpected message (after `arrive` found no receive).
    public mutating func enqueueUnexpected(_ id: Int32, matchInfo: UInt64) {
        let n = nodes.allocate()
        nodes[n].pointee = Node(id: id, matchInfo: matchInfo, mask: 0, next: -1, prev: unexpectedTail, isPostedReceive: false)
        if unexpectedTail >= 0 { nodes[unexpectedTail].pointee.next = n } else { unexpectedHead = n }
        unexpectedTail = n
        unexpectedCount += 1
    }

    /// The first unexpected message matching, without removing it (probe).
    public func peekUnexpected(matchInfo: UInt64, mask: UInt64) -> Int32? {
        var n = unexpectedHead
        while n >= 0 {
            let node = nodes[n].pointee
            if node.matchInfo & mask == matchInfo { return node.id }
            n = node.next
        }
        return nil
    }

    /// Removes and returns the first unexpected message matching.
    public mutating func takeUnexpected(matchInfo: UInt64, mask: UInt64) -> Int32? {
        var n = unexpectedHead
        while n >= 0 {
            let node = nodes[n].pointee
            if node.matchInfo & mask == matchInfo {
                if node.prev >= 0 { nodes[node.prev].pointee.next = node.next } else { unexpectedHead = node.next }
                if node.next >= 0 { nodes[node.next].pointee.prev = node.prev } else { unexpectedTail = node.prev }
                nodes.free(n)
                unexpectedCount -= 1
                return node.id
            }
            n = node.next
        }
        return nil
    }

    /// Every unexpected message id, oldest first (for teardown and removal by peer).
    public func unexpectedIDs() -> [Int32] {
        var out: [Int32] = []
        var n = unexpectedHead
        while n >= 0 { out.append(nodes[n].pointee.id); n = nodes[n].pointee.next }
        return out
    }

    /// Removes one specific unexpected message (e.g. its sender died before it was pulled).
    public mutating func removeUnexpected(_ id: Int32) {
        var n = unexpectedHead
        while n >= 0 {
            let node = nodes[n].pointee
            if node.id == id {
                if node.prev >= 0 { nodes[node.prev].pointee.next = node.next } else { unexpectedHead = node.next }
                if node.next >= 0 { nodes[node.next].pointee.prev = node.prev } else { unexpectedTail = node.prev }
                nodes.free(n)
                unexpectedCount -= 1
                return
            }
            n = node.next
        }
    }

    /// Every posted receive id, oldest first.
    public func postedIDs() -> [Int32] {
        var out: [Int32] = []
        var n = postedHead
        while n >= 0 { out.append(nodes[n].pointee.id); n = nodes[n].pointee.next }
        return out
    }
}
