# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this
# The demo's layer-2 segment: a bridge in a namespace of its own (the
# switch), and the namespaces node-a, node-b (the SAN nodes, targets) and
# client (the initiator), each plugged into the bridge with a veth pair.
# AoE runs on a VLAN: through kernel VLAN interfaces where the 8021q module
# exists, else tagged in userspace by ironblade and ironaoe (--vlan), with
# nftables rules in the bridge making the ports VLAN trunks. Sourced by
# scripts/demo.sh, which sets ID, MTU and VLAN; it sets the variables below.

# Namespace names, unique to this run.
NS_SWITCH=ibdemo-$ID-switch
NS_A=ibdemo-$ID-node-a
NS_B=ibdemo-$ID-node-b
NS_CLIENT=ibdemo-$ID-client
# Each host's interface is eth0; its bridge port is port-<host>.
MAC_A=02:1b:de:00:00:0a
MAC_B=02:1b:de:00:00:0b
MAC_CLIENT=02:1b:de:00:00:0c
# IFACE is the interface AoE uses on every host, VLAN_ARGS what ironblade
# and ironaoe are given for the VLAN, VLAN_KIND a description.
IFACE=eth0
VLAN_ARGS=()
VLAN_KIND=untagged
SEGMENT_UP=

# make_netns NAME creates a namespace with its loopback up and IPv6 off, so
# that no router solicitations show up as stray traffic.
make_netns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# link_ready NS IFACE [WANT] succeeds once IFACE is up and can send (a veth
# end drops what it sends until the kernel has seen its carrier, which shows
# as the noop queueing discipline) and `ip -d link` shows WANT.
link_ready() {
	local out
	out=$(ip -n "$1" -d -o link show dev "$2" 2>/dev/null) || return 1
	[[ $out == *"state UP"* && $out != *"qdisc noop"* && $out == *"${3:-}"* ]]
}

# switch_port PORT makes PORT (in NS_SWITCH) a port of br0, a trunk of the
# VLAN when there is one, and brings it up.
switch_port() {
	local port=$1
	ip -n "$NS_SWITCH" link set "$port" master br0
	if [ "$VLAN" -ne 0 ]; then
		# A trunk port of the VLAN: only frames tagged with it pass, both
		# ways (Linux's own bridge VLAN filtering needs 8021q).
		local dir
		for dir in iifname oifname; do
			ip netns exec "$NS_SWITCH" nft add rule bridge ibdemo forward "$dir" "\"$port\"" ether type != 8021q drop
			ip netns exec "$NS_SWITCH" nft add rule bridge ibdemo forward "$dir" "\"$port\"" vlan id != "$VLAN" drop
		done
	fi
	ip -n "$NS_SWITCH" link set "$port" up
}

# plug NS HOST MAC joins NS to the bridge as port-HOST, eth0 on NS's side.
plug() {
	local ns=$1 port=port-$2 mac=$3
	ip link add "$IFACE" netns "$ns" address "$mac" mtu "$MTU" type veth peer name "$port" netns "$NS_SWITCH" mtu "$MTU"
	switch_port "$port"
	ip -n "$ns" link set "$IFACE" up
	wait_until 10 "$port to forward" link_ready "$NS_SWITCH" "$port" "bridge_slave state forwarding"
	wait_until 10 "$IFACE in $ns to come up" link_ready "$ns" "$IFACE"
}

# build_segment creates the switch, the three hosts and the VLAN.
build_segment() {
	SEGMENT_UP=1
	make_netns "$NS_SWITCH"
	ip -n "$NS_SWITCH" link add br0 mtu "$MTU" type bridge stp_state 0
	ip -n "$NS_SWITCH" link set br0 up
	if [ "$VLAN" -ne 0 ]; then
		ip netns exec "$NS_SWITCH" nft add table bridge ibdemo
		ip netns exec "$NS_SWITCH" nft add chain bridge ibdemo forward '{ type filter hook forward priority 0 ; policy accept ; }'
	fi
	# VM nodes plug their own taps in (vm.sh).
	local hosts=("$NS_CLIENT")
	if [ "$NODES" != vm ]; then
		make_netns "$NS_A"
		make_netns "$NS_B"
		plug "$NS_A" a "$MAC_A"
		plug "$NS_B" b "$MAC_B"
		hosts+=("$NS_A" "$NS_B")
	fi
	make_netns "$NS_CLIENT"
	plug "$NS_CLIENT" client "$MAC_CLIENT"

	if [ "$VLAN" -eq 0 ]; then
		VLAN_KIND=untagged
	elif modprobe -q 8021q 2>/dev/null; then
		# Kernel VLAN interfaces: the programs see plain Ethernet.
		local ns
		for ns in "${hosts[@]}"; do
			ip -n "$ns" link add link eth0 name "eth0.$VLAN" type vlan id "$VLAN"
			ip -n "$ns" link set "eth0.$VLAN" up
			wait_until 10 "eth0.$VLAN in $ns to come up" link_ready "$ns" "eth0.$VLAN"
		done
		IFACE=eth0.$VLAN
		VLAN_KIND="VLAN $VLAN, kernel VLAN interfaces (8021q)"
	else
		VLAN_ARGS=(--vlan "$VLAN")
		VLAN_KIND="VLAN $VLAN, tagged in userspace (--vlan; no 8021q module)"
	fi
}

# cut_link HOST takes HOST's switch port down, as fencing at the switch does
# (a VM node's replication port too).
cut_link() {
	ip -n "$NS_SWITCH" link set "port-$1" down
	[ "$NODES" != vm ] || ip -n "$NS_SWITCH" link set "rep-$1" down
}

# restore_link HOST brings HOST's switch port back and waits until it
# forwards. A VM node's ports forward once its next guest has them open.
restore_link() {
	ip -n "$NS_SWITCH" link set "port-$1" up
	if [ "$NODES" = vm ]; then
		ip -n "$NS_SWITCH" link set "rep-$1" up
		return 0
	fi
	wait_until 10 "port-$1 to forward" link_ready "$NS_SWITCH" "port-$1" "bridge_slave state forwarding"
}

# remove_segment kills whatever still runs in the namespaces and deletes
# them (and with them the veth pairs and the bridge).
remove_segment() {
	[ -n "$SEGMENT_UP" ] || return 0
	local ns pids
	for ns in "$NS_CLIENT" "$NS_B" "$NS_A" "$NS_SWITCH"; do
		ip netns list 2>/dev/null | grep -qw -- "$ns" || continue
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		# shellcheck disable=SC2086 # one pid per word
		[ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || warn "could not delete namespace $ns"
	done
	SEGMENT_UP=
}
