/// The text `mx_info` prints, kept in the library so tests read exactly what users see.
public enum MXInfoReport {
    public static func render(_ info: MXBackendInfo, listRegions: Bool = false) -> String {
        var out: [String] = []
        out.append("MyriXen version 1.0 (emulated Myri-10G, MX API 0x\(String(MXLimits.apiVersion, radix: 16)))")
        out.append("backend: myrback pid \(info.backendPID), socket \(info.socketPath), pair rings \(info.ringBytes / 1024) KiB")
        out.append(info.wire.isEmpty ? "wire: none (this host's endpoints only)" : "wire: UDP \(info.wire) (emulated: datagrams between hosts)")
        out.append("\(info.boards.count) board(s) on \(info.hostname)")
        for b in info.boards {
            out.append("===================================================================")
            out.append("Board #\(b.number): \(b.name)")
            out.append("   NIC id:            \(NICAddressing.format(b.nicID))")
            out.append("   Line speed:        \(b.lineSpeedGbps) Gbit/s full duplex (emulated)")
            out.append("   Endpoints:         \(b.endpointsInUse) in use of \(b.endpointLimit)")
            let eps = info.endpoints.filter { $0.board == b.number }
            if !eps.isEmpty {
                out.append("   ep   pid       peers  regions  msgs sent  msgs recv  bytes sent    bytes recv    unexp  drops  refused")
                for e in eps {
                    out.append("   " + [
                        pad(String(e.endpoint), 5), pad(String(e.ownerPID), 10), pad(String(e.peers), 7),
                        pad(String(e.regions.count), 9), pad(String(e.counter(.messagesSent)), 11),
                        pad(String(e.counter(.messagesReceived)), 11), pad(String(e.counter(.bytesSent)), 14),
                        pad(String(e.counter(.bytesReceived)), 14), pad(String(e.counter(.unexpectedMessages)), 7),
                        pad(String(e.counter(.drops)), 7), String(e.counter(.refusedPulls)),
                    ].joined())
                    if e.counter(.framesSent) + e.counter(.framesReceived) > 0 {
                        out.append("        wire: \(e.counter(.framesSent)) frames sent in \(e.counter(.frameSends)) sends, \(e.counter(.framesReceived)) received in \(e.counter(.frameReceives)) receives, \(e.counter(.resentFrames)) resent")
                    }
                    if listRegions {
                        for r in e.regions {
                            out.append("        region \(r.id): 0x\(String(r.base, radix: 16)) +\(r.length)")
                        }
                    }
                }
            }
        }
        out.append("===================================================================")
        out.append("grants: \(info.grantsActive) active, \(info.grantsRevoked) revoked, \(info.refusedGrantMaps) refused maps; refused connects (bad key): \(info.refusedConnects)")
        out.append("shared memory held: \(info.sharedMemoryBytes / 1024) KiB")
        return out.joined(separator: "\n")
    }

    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count)
    }
}
