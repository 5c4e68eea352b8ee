import CHwloc

/// This host's processing topology, read with hwloc (Debian's libhwloc). The launcher maps and
/// binds ranks with it; `mx_info` shows it next to the board.
public struct HostTopology: Sendable, Equatable {
    public let packages: Int
    public let numaNodes: Int
    public let cores: Int
    public let processingUnits: Int

    /// Loads the topology of the machine this process runs on.
    public static func load() throws(MXError) -> HostTopology {
        var topology: hwloc_topology_t?
        guard hwloc_topology_init(&topology) == 0, let t = topology else {
            throw MXError(.system, "hwloc could not initialize a topology")
        }
        defer { hwloc_topology_destroy(t) }
        guard hwloc_topology_load(t) == 0 else { throw MXError(.system, "hwloc could not load this host's topology") }
        func count(_ type: hwloc_obj_type_t) -> Int { max(0, Int(hwloc_get_nbobjs_by_type(t, type))) }
        return HostTopology(packages: count(HWLOC_OBJ_PACKAGE), numaNodes: count(HWLOC_OBJ_NUMANODE),
                            cores: count(HWLOC_OBJ_CORE), processingUnits: count(HWLOC_OBJ_PU))
    }

    public var description: String {
        "\(packages) package(s), \(numaNodes) NUMA node(s), \(cores) core(s), \(processingUnits) PU(s)"
    }
}
