# Two emulated VMs joined by one veth pair (MTU ${MTU:-9000}), for the benchmarks that run
# across VMs (bin/bench-wire, bin/bench-collectives): network namespaces with names unique to
# this run, on a subnet of their own; swiftrun reaches them by name (`ip netns exec`). Needs
# root. Source this file, then:
#   vm_pair_up PREFIX   makes VM_PAIR=(PREFIXa<pid> PREFIXb<pid>), addresses SUBNET.1 and .2
#   vm_pair_down        removes what vm_pair_up made, and only that (call it from the EXIT trap;
#                       safe after a partial vm_pair_up, and twice)
VM_PAIR=() VM_PAIR_MADE=() VM_PAIR_LINK=""
vm_pair_up() {
    local prefix=$1 tag=$$ vm
    local subnet=10.203.$(( $$ % 200 + 20 ))
    VM_PAIR=("${prefix}a$tag" "${prefix}b$tag")
    for vm in "${VM_PAIR[@]}"; do
        ip netns add "$vm"
        VM_PAIR_MADE+=("$vm")
        ip -n "$vm" link set lo up
    done
    ip link add "${prefix}l$tag" mtu "${MTU:-9000}" type veth peer name "${prefix}m$tag" mtu "${MTU:-9000}"
    VM_PAIR_LINK="${prefix}l$tag"
    ip link set "${prefix}l$tag" netns "${VM_PAIR[0]}"
    ip link set "${prefix}m$tag" netns "${VM_PAIR[1]}"
    VM_PAIR_LINK="" # inside the namespaces now: it goes with them
    ip -n "${VM_PAIR[0]}" addr add "$subnet.1/24" dev "${prefix}l$tag"; ip -n "${VM_PAIR[0]}" link set "${prefix}l$tag" up
    ip -n "${VM_PAIR[1]}" addr add "$subnet.2/24" dev "${prefix}m$tag"; ip -n "${VM_PAIR[1]}" link set "${prefix}m$tag" up
}
vm_pair_down() {
    local vm
    for vm in "${VM_PAIR_MADE[@]}"; do ip netns del "$vm" 2>/dev/null || true; done
    VM_PAIR_MADE=()
    if [[ -n $VM_PAIR_LINK ]]; then ip link del "$VM_PAIR_LINK" 2>/dev/null || true; VM_PAIR_LINK=""; fi
}
