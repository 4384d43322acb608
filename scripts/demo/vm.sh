# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this
# The demo's SAN nodes as virtual machines (--nodes vm): each node is a qemu
# guest (TCG, one vCPU) with its own kernel and page cache, booted from
# Debian's kernel and an initramfs with the targets and DRBD's tools
# (scripts/demo/node-init.sh is its /init). A fence kills the guest's qemu
# with SIGKILL, so whatever its page cache held dies with it, as on a real
# machine. Sourced by scripts/demo.sh after segment.sh and hosts.sh.
#
# Each guest has two NICs, taps in the switch's namespace: port-HOST on the
# AoE segment's bridge (a VLAN trunk, like the client's port) and rep-HOST
# on br-rep, the replication link. Its disk is a sparse file opened with
# cache=none (O_DIRECT on the host: only the guest's own page cache is
# volatile): one per node, replicated by DRBD (--storage drbd), or one
# image both attach (--storage shared). A 9p share per node carries the
# host's commands in (see vm_do) and the node's logs out.

KERNEL_CACHE=${KERNEL_CACHE:-/var/cache/ironblade-kernel}
VM_MEM_MIB=${VM_MEM_MIB:-1024}
# kvm, tcg, or auto: KVM where a probe guest boots with it within
# VM_PROBE_SECS (a /dev/kvm that exists may still not work, as on nested
# machines), else TCG, which emulates the CPU and is 10-50 times slower.
VM_ACCEL=${VM_ACCEL:-auto}
VM_PROBE_SECS=${VM_PROBE_SECS:-10}
# Under TCG: Nehalem, SSE4.2 and no AVX, which TCG emulates slowly; two
# vCPUs (one host thread each) let the target and the kernel's I/O work in
# parallel. Under KVM: the host's CPU.
VM_CPU=${VM_CPU:-}
VM_SMP=${VM_SMP:-2}
# How long a guest may take to boot, and a DRBD resync to finish.
VM_BOOT_SECS=${VM_BOOT_SECS:-120}
VM_SYNC_SECS=${VM_SYNC_SECS:-600}
VM_DIR=    # initramfs, disks, shares (under WORK)
VM_PID_a=  # qemu's pid per node ("" when the guest is not running)
VM_PID_b=
VM_SEQ=0   # request numbers of vm_do
VM_STATE_a= # "up" once the node's storage is ready for a target
VM_STATE_b=
MAC_REP_a=02:1b:de:00:01:0a
MAC_REP_b=02:1b:de:00:01:0b

# vm_preflight checks what the VM nodes need before anything is built.
vm_preflight() {
	local cmd
	for cmd in qemu-system-x86_64 busybox modprobe depmod dpkg-deb apt-get; do
		command -v "$cmd" >/dev/null || fail "$cmd is missing (sudo bash scripts/deps.sh installs what the demo needs)"
	done
	[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || fail "no /dev/net/tun: the tun module is needed for the guests' NICs"
	command -v vblade >/dev/null || fail "vblade is missing (apt-get install vblade)"
	if [ "$STORAGE" = drbd ]; then
		if [ ! -x /lib/drbd/drbdadm-84 ] || [ ! -x /lib/drbd/drbdsetup-84 ] || ! command -v drbdmeta >/dev/null; then
			fail "DRBD's 8.4 tools are missing (/lib/drbd/drbdadm-84, drbdsetup-84, drbdmeta: apt-get install drbd-utils)"
		fi
	fi
}

# vm_prepare fetches the guest kernel and builds the nodes' initramfs: the
# modules, ironblade (static, from the tree), vblade, DRBD's tools and
# iproute2 with their libraries, and node-init.sh as /init.
vm_prepare() {
	VM_DIR=$WORK/vm
	mkdir -p "$VM_DIR/disks"
	# shellcheck source=scripts/kernel/kernel.sh
	source "$REPO/scripts/kernel/kernel.sh"
	die() { fail "$*"; }
	# Progress to the log; a failure names itself on stderr (die exits).
	kernel_fetch "$KERNEL_CACHE" "${KERNEL_PKG:-}" >>"$WORK/vm-prepare.log"
	local ird=$VM_DIR/initramfs
	mkdir -p "$ird"/{bin,sbin,usr/bin,usr/sbin,etc,lib/drbd,proc,sys,dev,tmp,run,share,root,var/lib/drbd,var/run}
	cp "$(command -v busybox)" "$ird/bin/busybox"
	install -m 755 "$REPO/scripts/demo/node-init.sh" "$ird/init"
	local modules=(virtio_pci virtio_net virtio_blk 9pnet_virtio 9p 8021q drbd)
	initramfs_modules "$ird" "${modules[@]}"
	CGO_ENABLED=0 go build -C "$REPO" -trimpath -buildvcs=false -o "$ird/usr/sbin/ironblade" ./cmd/ironblade ||
		fail "ironblade does not build for the guests"
	initramfs_binary "$ird" "$(command -v vblade)" /usr/sbin/vblade
	initramfs_binary "$ird" "$(command -v ip)" /sbin/ip
	if [ "$STORAGE" = drbd ]; then
		# The kernel's DRBD is 8.4: its drbdadm and drbdsetup, at the paths
		# the 8.4 drbdadm runs them from.
		initramfs_binary "$ird" /lib/drbd/drbdadm-84 /sbin/drbdadm
		initramfs_binary "$ird" /lib/drbd/drbdsetup-84 /lib/drbd/drbdsetup-84
		initramfs_binary "$ird" /lib/drbd/drbdsetup-84 /sbin/drbdsetup-84
		initramfs_binary "$ird" "$(command -v drbdmeta)" /sbin/drbdmeta
	fi
	(cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null) >"$VM_DIR/initramfs.cpio"
	vm_choose_accel
	VM_KERNEL_TEXT="$KERNEL_PKG, ${VM_ACCEL^^}, $VM_SMP vCPUs ($VM_CPU), $VM_MEM_MIB MiB"
}

# vm_choose_accel settles VM_ACCEL (kvm or tcg) and VM_CPU: with auto, a
# guest is booted with KVM to its init, which powers off at once.
vm_choose_accel() {
	if [ "$VM_ACCEL" = auto ]; then
		VM_ACCEL=tcg
		if [ -w /dev/kvm ] && timeout -s KILL "$VM_PROBE_SECS" qemu-system-x86_64 -accel kvm -cpu host -m 256 \
			-nodefaults -no-user-config -display none -no-reboot -monitor none -serial stdio \
			-kernel "$VMLINUZ" -initrd "$VM_DIR/initramfs.cpio" -append "console=ttyS0 quiet panic=-1 ib.probe=1" \
			</dev/null 2>/dev/null | grep -q 'node-init: probe ok'; then
			VM_ACCEL=kvm
		fi
	fi
	case $VM_ACCEL in
	kvm) : "${VM_CPU:=host}" ;;
	tcg) : "${VM_CPU:=Nehalem}" ;;
	*) fail "VM_ACCEL=$VM_ACCEL: want kvm, tcg or auto" ;;
	esac
}

# vm_links_up makes the replication bridge (once).
vm_links_up() {
	ip -n "$NS_SWITCH" link show br-rep >/dev/null 2>&1 && return 0
	ip -n "$NS_SWITCH" link add br-rep mtu 9000 type bridge stp_state 0
	ip -n "$NS_SWITCH" link set br-rep up
}

# vm_taps HOST makes HOST's taps in the switch's namespace (once): port-HOST
# on br0, rep-HOST on br-rep. They outlive the guest (a fenced node's new
# qemu opens them again).
vm_taps() {
	local host=$1
	vm_links_up
	ip -n "$NS_SWITCH" link show "port-$host" >/dev/null 2>&1 && return 0
	ip -n "$NS_SWITCH" tuntap add dev "port-$host" mode tap
	ip -n "$NS_SWITCH" link set "port-$host" mtu "$MTU"
	switch_port "port-$host"
	ip -n "$NS_SWITCH" tuntap add dev "rep-$host" mode tap
	ip -n "$NS_SWITCH" link set "rep-$host" mtu 9000 master br-rep up
}

# vm_disk HOST prints the disk image of node HOST.
vm_disk() {
	if [ "$STORAGE" = shared ]; then echo "$VM_DIR/disks/shared.img"; else echo "$VM_DIR/disks/node-$1.img"; fi
}

# vm_new_disks MIB makes blank disks of MIB MiB (sparse) for the next
# configuration, replacing the last one's.
vm_new_disks() {
	# (node-HOST.img.md marks a disk that has DRBD metadata.)
	rm -f "$VM_DIR"/disks/*.img "$VM_DIR"/disks/*.md
	local host
	for host in a b; do
		truncate -s "${1}M" "$(vm_disk "$host")"
	done
}

vm_pid() { local v=VM_PID_$1; printf %s "${!v}"; }

# vm_boot HOST LOG starts node HOST's guest and waits until it is ready for
# commands.
vm_boot() {
	vm_start "$@"
	vm_wait_ready "$1"
}

# vm_start HOST LOG starts node HOST's guest.
vm_start() {
	local host=$1 log=$2 share=$VM_DIR/share-$1 mac locking=
	mac=$([ "$host" = a ] && echo "$MAC_A" || echo "$MAC_B")
	local rep=MAC_REP_$host
	vm_taps "$host"
	# The share's logs stay across a node's boots.
	mkdir -p "$share/ctl"
	rm -f "$share/ready" "$share"/ctl/*
	# Two guests open the shared image: qemu's image locking would refuse
	# the second.
	[ "$STORAGE" = shared ] && locking=,file.locking=off
	rm -f "$VM_DIR/qemu-$host.pid"
	in_netns "$NS_SWITCH" qemu-system-x86_64 -accel "$VM_ACCEL" -cpu "$VM_CPU" -smp "$VM_SMP" -m "$VM_MEM_MIB" \
		-nodefaults -no-user-config -display none -no-reboot -monitor none \
		-serial "file:$VM_DIR/console-$host.log" \
		-kernel "$VMLINUZ" -initrd "$VM_DIR/initramfs.cpio" \
		-append "console=ttyS0 quiet panic=-1 mitigations=off random.trust_cpu=on ib.node=$host ib.mtu=$MTU ib.vlan=$VLAN ib.storage=$STORAGE" \
		-netdev "tap,id=aoe,ifname=port-$host,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=aoe,mac=$mac,romfile=" \
		-netdev "tap,id=rep,ifname=rep-$host,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=rep,mac=${!rep},romfile=" \
		-drive "file=$(vm_disk "$host"),format=raw,if=virtio,cache=none,aio=threads$locking" \
		-fsdev "local,id=fs0,path=$share,security_model=none" \
		-device "virtio-9p-pci,fsdev=fs0,mount_tag=share" \
		-pidfile "$VM_DIR/qemu-$host.pid" \
		>>"$log" 2>&1 &
	printf -v "VM_PID_$host" %s "$!"
}

# vm_wait_ready HOST waits until node HOST's guest has booted and takes
# commands.
vm_wait_ready() {
	local host=$1 share=$VM_DIR/share-$1
	local deadline=$((SECONDS + VM_BOOT_SECS))
	until [ -e "$share/ready" ]; do
		alive "$(vm_pid "$host")" || fail "node-$host's guest exited while booting: $(tail -n 5 "$VM_DIR/console-$host.log" "$share/node.log" 2>/dev/null)"
		[ "$SECONDS" -lt "$deadline" ] || fail "node-$host's guest did not boot within $VM_BOOT_SECS s: see $VM_DIR/console-$host.log"
		sleep 0.2
	done
}

# vm_do HOST SECS COMMAND runs COMMAND (a shell command line, with
# node-init.sh's functions) in node HOST's guest and prints its output; it
# fails if the command does or if no answer comes within SECS. Not in a
# subshell: the request numbers are counted here.
vm_do() {
	local host=$1 secs=$2 ctl=$VM_DIR/share-$1/ctl n answer
	shift 2
	VM_SEQ=$((VM_SEQ + 1))
	n=$(printf '%05d' "$VM_SEQ")
	printf '%s\n' "$*" >"$ctl/$n.tmp"
	mv "$ctl/$n.tmp" "$ctl/$n.req"
	local deadline=$((SECONDS + secs))
	while :; do
		for answer in "$ctl/$n.ok" "$ctl/$n.err"; do
			[ -e "$answer" ] && break 2
		done
		if ! alive "$(vm_pid "$host")" || [ "$SECONDS" -ge "$deadline" ]; then
			echo "node-$host: no answer to '$*' within $secs s"
			return 1
		fi
		sleep 0.05
	done
	{
		printf '[%s] node-%s: %s -> %s\n' "$(date +%T.%N | cut -c1-12)" "$host" "$*" "${answer##*.}"
		sed 's/^/    /' "$answer"
	} >>"$WORK/vm-commands.log"
	cat "$answer"
	rm -f "$ctl/$n.run" "$answer"
	[ "${answer##*.}" = ok ]
}

# vm_must HOST SECS COMMAND is vm_do that fails the demo.
vm_must() {
	vm_do "$@" >"$WORK/vm-answer" || fail "node-$1: '${*:3}' failed: $(cat "$WORK/vm-answer")"
}

# vm_kill HOST kills node HOST's qemu at once (SIGKILL): the guest's page
# cache, its DRBD state and its target die together. It returns once the
# process is gone, so that its taps and disk are free for the next guest.
vm_kill() {
	local pid i
	pid=$(vm_pid "$1")
	[ -n "$pid" ] || return 0
	# (in_netns execs, so $! is qemu's pid; bash reports the kill of its job
	# on stderr.)
	{
		kill -KILL "$pid" || true
		wait "$pid" || true
	} 2>/dev/null
	for ((i = 0; i < 200; i++)); do
		[ -e "/proc/$pid" ] || break
		sleep 0.05
	done
	printf -v "VM_PID_$1" %s ""
	printf -v "VM_STATE_$1" %s ""
}

# vm_node_ready HOST LOG brings node HOST to where a target can start on
# it: the guest booted, and with DRBD the resource connected, both disks
# up to date and this node primary. A fresh pair of nodes (both blank)
# skips the initial sync; a node back from a fence resyncs from its peer.
vm_node_ready() {
	local host=$1 log=$2 state=VM_STATE_$1 peer
	[ -z "${!state}" ] || return 0
	peer=$([ "$host" = a ] && echo b || echo a)
	local peer_state=VM_STATE_$peer
	[ -n "$(vm_pid "$host")" ] || vm_boot "$host" "$log"
	if [ "$STORAGE" = drbd ]; then
		if [ -n "${!peer_state}" ]; then
			# The peer serves already: rejoin (resync from it), or
			# join fresh when this disk is blank.
			vm_must "$host" 60 "drbd_up $([ -e "$(vm_disk "$host").md" ] && echo rejoin || echo fresh)"
			: >"$(vm_disk "$host").md"
			local t0=$SECONDS
			vm_must "$host" "$VM_SYNC_SECS" drbd_wait cs:Connected ds:UpToDate/UpToDate
			note "node-$host rejoined DRBD and is up to date after $((SECONDS - t0)) s"
		else
			fail "node-$host: its peer is down too, so there is nothing up to date to resync from"
		fi
		vm_must "$host" 60 drbd_primary
	fi
	printf -v "$state" %s up
}

# vm_pair_ready LOG boots both nodes of a new configuration on blank disks
# and, with DRBD, connects them and marks them in sync without copying.
vm_pair_ready() {
	local log=$1
	vm_start a "$log"
	vm_start b "$log"
	vm_wait_ready a
	vm_wait_ready b
	if [ "$STORAGE" = drbd ]; then
		vm_must a 60 drbd_up fresh
		vm_must b 60 drbd_up fresh
		: >"$(vm_disk a).md"
		: >"$(vm_disk b).md"
		vm_must a 120 drbd_wait cs:Connected
		vm_must a 60 drbd_skip_sync
		vm_must a 120 drbd_wait ds:UpToDate/UpToDate
		vm_must b 120 drbd_wait ds:UpToDate/UpToDate
		vm_must a 60 drbd_primary
		vm_must b 60 drbd_primary
	fi
	VM_STATE_a=up
	VM_STATE_b=up
}

# vm_pair_down ends both guests of a configuration.
vm_pair_down() {
	vm_kill a
	vm_kill b
}
