// mx_info: what this host's emulated Myri-10G board(s) look like right now.
import ArgumentParser
import MyriXen
import Topology

struct MXInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mx_info",
        abstract: "Show the emulated Myri-10G boards of this host: NIC ids, open endpoints and their owners, registered regions, counters.")

    @Option(name: .long, help: "Backend socket (default: $MYRIXEN_SOCKET or /tmp/myrixen-<uid>/myrback.sock).")
    var socket: String?

    @Flag(name: .long, help: "Do not start a backend when none runs; report that instead.")
    var noStart = false

    @Flag(name: .long, help: "List every registered region.")
    var regions = false

    func run() throws {
        let mx = try MXContext(socketPath: socket, startBackend: !noStart)
        defer { mx.finalize() }
        let info = try mx.info()
        print(MXInfoReport.render(info, listRegions: regions))
        if let topology = try? HostTopology.load() {
            print("host topology (hwloc): \(topology.description)")
        }
    }
}

MXInfo.main()
