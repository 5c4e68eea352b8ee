#if canImport(Glibc)
import Glibc
#endif
import CMyriXen

/// The board's side of the wire: the backend's UDP port on the host's wire address. Backends
/// of two hosts meet here to connect endpoints (the key is checked by the target's backend)
/// and to say when an endpoint closed; the data itself goes between the endpoints' own wire
/// sockets, which the backend creates and hands over at open.
extension Backend {
    /// A peer endpoint on another host, as the backend records it for close notices.
    struct RemoteKey: Hashable {
        let nicID: UInt64
        let endpoint: UInt16
        let session: UInt32
    }

    /// A connect to another host waiting for that host's backend to answer.
    struct RemoteConnect {
        /// Gone when the frontend went away meanwhile: then nobody waits for the answer.
        weak var conn: Connection?
        let token: UInt32
        let serial: UInt64
        let target: UInt64
        let endpoint: UInt16
        let request: [UInt8]
        let started: UInt64
        var lastSent: UInt64
    }

    /// Parses `--wire`: an IPv4 address of this host, `auto` (the first address of an interface
    /// that is up and not loopback, nil when there is none) or `none`.
    public static func wireAddress(_ spec: String) throws(MXError) -> UInt32? {
        switch spec {
        case "none", "": return nil
        case "auto":
            let ip = cmx_first_ipv4()
            return ip == 0 ? nil : ip
        default:
            let ip = cmx_parse_ipv4(spec)
            guard ip != 0 else {
                throw MXError(.badParameter, "--wire \(spec): not an IPv4 address (or auto, none)")
            }
            return ip
        }
    }

    /// Binds the board port on the wire address and learns the wire's subnet: frames only
    /// ever go to addresses inside it.
    func openWire(_ ip: UInt32) throws(MXError) {
        let mask: UInt32 = ip >> 24 == 127 ? 0xFF00_0000 : cmx_ipv4_netmask(ip)
        guard mask != 0 else {
            throw MXError(.badParameter, "--wire \(NICAddressing.formatIPv4(ip)): no interface of this host has that address")
        }
        let fd = cmx_udp_socket(ip, MXWire.port, MXWire.socketBufferBytes)
        guard fd >= 0 else {
            let e = String(cString: strerror(errno))
            throw MXError(.system, "cannot bind the board port \(NICAddressing.formatIPv4(ip)):\(MXWire.port): \(e) (is another myrback on this address?)")
        }
        wireFD = fd
        wireNetmask = mask
        // Loopback (the tests' wire) reports no MTU of its own for 127.x addresses other than
        // 127.0.0.1: take the loopback's.
        let mtu = Int(cmx_interface_mtu(ip))
        let linkMTU = mtu > 0 ? mtu : (ip >> 24 == 127 ? Int(cmx_interface_mtu(0x7F00_0001)) : 1500)
        wireFrameLimit = UInt32(MXWire.frameLimit(mtu: min(linkMTU, config.wireMTU ?? linkMTU)))
    }

    /// A wire socket for a new endpoint: same address, a port of its own.
    func makeEndpointWireSocket() throws(MXError) -> (fd: Int32, port: UInt16) {
        guard let ip = config.wire else { return (-1, 0) }
        let fd = cmx_udp_socket(ip, 0, MXWire.socketBufferBytes)
        guard fd >= 0 else { throw systemError("socket (endpoint wire)") }
        let port = cmx_udp_port(fd)
        guard port > 0 else { closeDescriptor(fd); throw systemError("getsockname (endpoint wire)") }
        return (fd, UInt16(port))
    }

    func onWire(_ ip: UInt32) -> Bool {
        guard let mine = config.wire, ip != 0 else { return false }
        return ip & wireNetmask == mine & wireNetmask && ip | wireNetmask != 0xFFFF_FFFF
    }

    func sendBoard(_ ip: UInt32, port: UInt16 = MXWire.port, _ bytes: [UInt8]) {
        guard onWire(ip) else { return }
        _ = bytes.withUnsafeBytes { cmx_udp_send(wireFD, ip, port, $0.baseAddress, $0.count, nil, 0) }
    }

    func boardMessage(_ type: BoardMessage, _ body: (inout ByteWriter) -> Void) -> [UInt8] {
        var w = ByteWriter()
        w.put(BoardMessage.magic)
        w.put(type.rawValue)
        body(&w)
        return w.bytes
    }

    /// Starts a connect from `me` to an endpoint of another host; the frontend's reply waits
    /// for that host's backend.
    func startRemoteConnect(conn: Connection, token: UInt32, me: EndpointRecord, nicID: UInt64, endpoint: Int, key: UInt32) throws(MXError) {
        let (ip, _) = NICAddressing.wireAddress(of: nicID)
        guard config.wire != nil else {
            throw MXError(.unknownNICID, "no board with NIC id \(NICAddressing.format(nicID)) is on \(config.hostname), which has no wire to other hosts (myrback --wire)")
        }
        guard onWire(ip) else {
            throw MXError(.unknownNICID, "NIC id \(NICAddressing.format(nicID)) names \(NICAddressing.formatIPv4(ip)), which is not on this host's wire (\(NICAddressing.formatIPv4(config.wire! & wireNetmask))/\(wireNetmask.nonzeroBitCount))")
        }
        let id = nextRemoteConnect
        nextRemoteConnect &+= 1
        let request = boardMessage(.connectRequest) { w in
            w.put(id); w.put(nicIDs[me.board]); w.put(UInt16(me.index)); w.put(me.session); w.put(me.wirePort); w.put(me.wireBuffer)
            w.put(wireFrameLimit); w.put(nicID); w.put(UInt16(endpoint)); w.put(key)
        }
        let now = monotonicNanoseconds()
        remoteConnects[id] = RemoteConnect(conn: conn, token: token, serial: me.serial, target: nicID,
                                           endpoint: UInt16(endpoint), request: request, started: now, lastSent: now)
        sendBoard(ip, request)
        log("endpoint \(me.board).\(me.index) connecting to \(NICAddressing.format(nicID)) endpoint \(endpoint)")
    }

    /// Resends unanswered connect requests; gives up on those past the limit.
    func resendRemoteConnects() {
        let now = monotonicNanoseconds()
        for (id, c) in remoteConnects {
            guard let conn = c.conn, connections[conn.socket.fd] === conn else {
                remoteConnects[id] = nil
                continue
            }
            if now - c.started > MXWire.connectGiveUpNanoseconds {
                remoteConnects[id] = nil
                let (ip, board) = NICAddressing.wireAddress(of: c.target)
                conn.post(ControlMessage.encodeError(MXError(.timeout, "no answer from the backend of \(NICAddressing.formatIPv4(ip)) (board \(board)) within \(MXWire.connectGiveUpNanoseconds / 1_000_000_000) s: is a myrback with --wire running there?"), token: c.token))
            } else if now - c.lastSent > MXWire.connectResendNanoseconds {
                remoteConnects[id]?.lastSent = now
                sendBoard(NICAddressing.wireAddress(of: c.target).ipv4, c.request)
            }
        }
    }

    /// Reads what other backends sent to the board port.
    func serveWire() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<256 {
            var ip: UInt32 = 0
            var port: UInt16 = 0
            let n = buffer.withUnsafeMutableBytes { cmx_udp_recv(wireFD, $0.baseAddress, $0.count, &ip, &port) }
            guard n >= 0 else { return }
            guard n <= buffer.count, onWire(ip) else { continue }
            var r = ByteReader(Array(buffer[0..<n]))
            do throws(MXError) {
                guard try r.get(UInt32.self) == BoardMessage.magic, let type = BoardMessage(rawValue: try r.get(UInt8.self)) else { continue }
                if remoteHosts[ip] != nil { remoteHosts[ip]!.heard = monotonicNanoseconds() }
                switch type {
                case .heartbeat: break
                case .closedReceipt:
                    // The receipt repeats the notice's fields: the notice is that message.
                    closeNotices[boardMessage(.endpointClosed) { $0.putBytes(Array(buffer[5..<n])) }] = nil
                case .connectRequest: try answerConnect(&r, from: ip, port: port)
                case .connectReply: try finishRemoteConnect(&r, from: ip)
                case .endpointClosed: try remoteEndpointClosed(&r, from: ip, fields: buffer[5..<n])
                }
            } catch {
                log("ignored a malformed board message from \(NICAddressing.formatIPv4(ip)): \(error.message)")
            }
        }
    }

    /// Another host's endpoint asks to connect to one of ours: the target's backend checks the
    /// endpoint and the key, tells the target (before the initiator can send), then answers.
    func answerConnect(_ r: inout ByteReader, from ip: UInt32, port: UInt16) throws(MXError) {
        let id = try r.get(UInt32.self)
        let source = RemoteKey(nicID: try r.get(), endpoint: try r.get(), session: try r.get())
        let sourcePort = try r.get(UInt16.self)
        let sourceBuffer = try r.get(UInt32.self)
        let sourceFrameLimit = try r.get(UInt32.self)
        let nicID = try r.get(UInt64.self)
        let index = Int(try r.get(UInt16.self))
        let key = try r.get(UInt32.self)
        func answer(_ error: MXError?, session: UInt32 = 0, wirePort: UInt16 = 0, wireBuffer: UInt32 = 0) {
            sendBoard(ip, port: port, boardMessage(.connectReply) { w in
                w.put(id); w.put(error?.code.rawValue ?? ""); w.put(error?.message ?? "")
                w.put(session); w.put(wirePort); w.put(wireBuffer); w.put(wireFrameLimit)
            })
        }
        // A source that is not on the wire it claims cannot be answered honestly.
        guard NICAddressing.wireAddress(of: source.nicID).ipv4 == ip else { return }
        guard let board = nicIDs.firstIndex(of: nicID) else {
            return answer(MXError(.unknownNICID, "no board with NIC id \(NICAddressing.format(nicID)) on \(config.hostname)"))
        }
        let name = NICAddressing.boardName(hostname: config.hostname, board: board)
        guard index < config.endpointsPerBoard, let target = boards[board][index] else {
            return answer(MXError(.invalidEndpoint, "no endpoint \(index) is open on \(name)"))
        }
        guard target.key == key else {
            refusedConnects += 1
            return answer(MXError(.badConnectionKey, "endpoint \(index) on \(name) refused the key 0x\(String(key, radix: 16))"))
        }
        track(host: ip)
        if target.remotePeers.insert(source).inserted {
            let peer = RemotePeer(nicID: source.nicID, endpoint: source.endpoint, session: source.session, ipv4: ip,
                                  port: sourcePort, receiveBuffer: sourceBuffer, frameLimit: sourceFrameLimit)
            target.owner.post(ControlMessage.encode(.remotePeerAttached, token: 0) { peer.encode(to: &$0) })
            target.bumpAttachGeneration()
            log("endpoint \(board).\(index) accepted \(NICAddressing.format(source.nicID)) endpoint \(source.endpoint)")
        }
        answer(nil, session: target.session, wirePort: target.wirePort, wireBuffer: target.wireBuffer)
    }

    func finishRemoteConnect(_ r: inout ByteReader, from ip: UInt32) throws(MXError) {
        let id = try r.get(UInt32.self)
        let code = try r.getString()
        let message = try r.getString()
        let session = try r.get(UInt32.self)
        let port = try r.get(UInt16.self)
        let buffer = try r.get(UInt32.self)
        let frameLimit = try r.get(UInt32.self)
        guard let c = remoteConnects[id], NICAddressing.wireAddress(of: c.target).ipv4 == ip else { return }
        remoteConnects[id] = nil
        // The initiator may have closed meanwhile: then nobody waits for the answer.
        guard let conn = c.conn, connections[conn.socket.fd] === conn, let me = conn.endpoint, me.serial == c.serial else { return }
        if !code.isEmpty {
            let error = MXError(MXError.Code(rawValue: code) ?? .protocolError, message)
            conn.post(ControlMessage.encodeError(error, token: c.token))
            return
        }
        me.remotePeers.insert(RemoteKey(nicID: c.target, endpoint: c.endpoint, session: session))
        track(host: ip)
        let peer = RemotePeer(nicID: c.target, endpoint: c.endpoint, session: session, ipv4: ip, port: port,
                              receiveBuffer: buffer, frameLimit: frameLimit)
        conn.post(ControlMessage.encode(.reply, token: c.token, flags: ControlFlags.remotePeer) { peer.encode(to: &$0) })
    }

    /// An endpoint of another host closed: its peers here hear of it as of a local one.
    func remoteEndpointClosed(_ r: inout ByteReader, from ip: UInt32, fields: ArraySlice<UInt8>) throws(MXError) {
        let gone = RemoteKey(nicID: try r.get(), endpoint: try r.get(), session: try r.get())
        let nicID = try r.get(UInt64.self)
        let index = Int(try r.get(UInt16.self))
        let session = try r.get(UInt32.self)
        guard NICAddressing.wireAddress(of: gone.nicID).ipv4 == ip else { return }
        // Receipted whatever came of it (a repeat, an endpoint long gone): the sender stops.
        sendBoard(ip, boardMessage(.closedReceipt) { $0.putBytes(Array(fields)) })
        guard let board = nicIDs.firstIndex(of: nicID),
              index < config.endpointsPerBoard, let ep = boards[board][index], ep.session == session,
              ep.remotePeers.remove(gone) != nil else { return }
        tellDetached(ep, nicID: gone.nicID, endpoint: gone.endpoint, session: gone.session)
        ep.bumpAttachGeneration()
    }

    /// Starts (or keeps) watching a host this one now has a pair with.
    func track(host ip: UInt32) {
        if remoteHosts[ip] == nil { remoteHosts[ip] = (monotonicNanoseconds(), 0) }
    }

    /// Every 250 ms: says "alive" to every host with pairs here; ends the pairs with a host
    /// silent for longer than the host timeout (its endpoints hear `peerDetached`, as for a
    /// close, and that host is told, should it come back); stops watching hosts no pair needs
    /// any more; resends close notices not receipted yet.
    func checkRemoteHosts() {
        let now = monotonicNanoseconds()
        guard now - lastHostCheck >= MXWire.heartbeatNanoseconds else { return }
        lastHostCheck = now
        let timeout = UInt64(config.hostTimeoutSeconds) * 1_000_000_000
        for (notice, state) in closeNotices {
            if now - state.first > timeout { closeNotices[notice] = nil } else { sendBoard(state.ip, notice) }
        }
        var needed = Set<UInt32>()
        for ep in endpointsBySerial.values { for peer in ep.remotePeers { needed.insert(NICAddressing.wireAddress(of: peer.nicID).ipv4) } }
        for (ip, state) in remoteHosts {
            guard needed.contains(ip) else { remoteHosts[ip] = nil; continue }
            if now > state.heard && now - state.heard > timeout {
                remoteHosts[ip] = nil
                log("host \(NICAddressing.formatIPv4(ip)) silent for \(config.hostTimeoutSeconds) s: its pairs end")
                for ep in endpointsBySerial.values {
                    let gone = ep.remotePeers.filter { NICAddressing.wireAddress(of: $0.nicID).ipv4 == ip }
                    guard !gone.isEmpty else { continue }
                    for peer in gone {
                        ep.remotePeers.remove(peer)
                        tellDetached(ep, nicID: peer.nicID, endpoint: peer.endpoint, session: peer.session,
                                     flags: ControlFlags.hostLost)
                        // Should that host only have been cut off, its side of the pair ends too.
                        noticeClosed(ep, to: peer, now: now)
                    }
                    ep.bumpAttachGeneration()
                }
            } else if now - state.told >= MXWire.heartbeatNanoseconds {
                remoteHosts[ip]!.told = now
                sendBoard(ip, boardMessage(.heartbeat) { _ in })
            }
        }
    }

    /// Tells the backends of an endpoint's remote peers that it is gone.
    func announceClosed(_ ep: EndpointRecord) {
        let now = monotonicNanoseconds()
        for peer in ep.remotePeers { noticeClosed(ep, to: peer, now: now) }
        ep.remotePeers.removeAll()
    }

    /// Sends an endpointClosed notice about `ep` to `peer`'s host, and again every 250 ms until
    /// receipted (for up to the host timeout).
    func noticeClosed(_ ep: EndpointRecord, to peer: RemoteKey, now: UInt64) {
        let notice = boardMessage(.endpointClosed) { w in
            w.put(nicIDs[ep.board]); w.put(UInt16(ep.index)); w.put(ep.session)
            w.put(peer.nicID); w.put(peer.endpoint); w.put(peer.session)
        }
        let ip = NICAddressing.wireAddress(of: peer.nicID).ipv4
        closeNotices[notice] = (ip, now, now)
        sendBoard(ip, notice)
    }
}
