import CHwloc
import MyriXen
#if canImport(Glibc)
import Glibc
#endif

/// This host's processing topology, read with hwloc (Debian's libhwloc). The launcher maps and
/// binds ranks with it; `mx_info` shows it next to the board.
public struct HostTopology: Sendable, Equatable {
    /// A core: its logical index, the package (socket) and NUMA node it belongs to, and the
    /// operating-system numbers of its hardware threads (PUs).
    public struct Core: Sendable, Equatable {
        public let index: Int
        public let package: Int
        public let numaNode: Int
        public let processingUnits: [Int]

        public init(index: Int, package: Int, numaNode: Int, processingUnits: [Int]) {
            self.index = index
            self.package = package
            self.numaNode = numaNode
            self.processingUnits = processingUnits
        }
    }

    public let packages: Int
    public let numaNodes: Int
    public let cores: [Core]
    public let processingUnits: Int

    public init(packages: Int, numaNodes: Int, cores: [Core], processingUnits: Int) {
        self.packages = packages
        self.numaNodes = numaNodes
        self.cores = cores
        self.processingUnits = processingUnits
    }

    /// Loads the topology of the machine this process runs on.
    public static func load() throws(MXError) -> HostTopology {
        // Cores, packages and NUMA nodes need none of hwloc's plugins (PCI, OpenCL, GL, XML
        // import); loading them (libxml2, ICU) took 2 of a launch's first milliseconds. Unless
        // the user points hwloc at plugins, it looks for them nowhere, for this load only (the
        // variable is not left for the ranks).
        let ownPluginPath = getenv("HWLOC_PLUGINS_PATH") == nil
        if ownPluginPath { setenv("HWLOC_PLUGINS_PATH", "/dev/null", 1) }
        defer { if ownPluginPath { unsetenv("HWLOC_PLUGINS_PATH") } }
        var topology: hwloc_topology_t?
        guard hwloc_topology_init(&topology) == 0, let t = topology else {
            throw MXError(.system, "hwloc could not initialize a topology")
        }
        defer { hwloc_topology_destroy(t) }
        _ = hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE)
        // Linux's sysfs gives cores, packages and NUMA nodes; hwloc's x86 component asks CPUID
        // for the same (and caches), and in a VM every CPUID exits to the hypervisor: it took
        // 0.6 of the load's 0.9 ms here. HWLOC_COMPONENTS, where the user sets it, decides.
        if getenv("HWLOC_COMPONENTS") == nil {
            _ = hwloc_topology_set_components(t, UInt(HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST.rawValue), "x86")
        }
        guard hwloc_topology_load(t) == 0 else { throw MXError(.system, "hwloc could not load this host's topology") }
        func count(_ type: hwloc_obj_type_t) -> Int { max(0, Int(hwloc_get_nbobjs_by_type(t, type))) }
        var cores: [Core] = []
        for i in 0..<count(HWLOC_OBJ_CORE) {
            guard let core = hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, UInt32(i)) else { continue }
            var pus: [Int] = []
            var pu = hwloc_bitmap_first(core.pointee.cpuset)
            while pu >= 0 {
                pus.append(Int(pu))
                pu = hwloc_bitmap_next(core.pointee.cpuset, pu)
            }
            var package = 0
            var parent = core.pointee.parent
            while let p = parent {
                if p.pointee.type == HWLOC_OBJ_PACKAGE { package = Int(p.pointee.logical_index); break }
                parent = p.pointee.parent
            }
            let numa = max(0, Int(hwloc_bitmap_first(core.pointee.nodeset)))
            cores.append(Core(index: i, package: package, numaNode: numa, processingUnits: pus))
        }
        return HostTopology(packages: max(1, count(HWLOC_OBJ_PACKAGE)), numaNodes: max(1, count(HWLOC_OBJ_NUMANODE)),
                            cores: cores, processingUnits: count(HWLOC_OBJ_PU))
    }

    public var description: String {
        "\(packages) package(s), \(numaNodes) NUMA node(s), \(cores.count) core(s), \(processingUnits) PU(s)"
    }
}
