# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this
# What runs on the demo's hosts: the target of the configuration (ironblade
# or vblade, with -s or not) on node-a and node-b, processes here or VM
# guests (vm.sh), serving the store as the same shelf.slot, and on the
# client the chain
# ironaoe serve -> nbdfuse -> loop device -> ext4 (or ironaoe attach ->
# /dev/nbdN where the nbd module exists). Sourced by scripts/demo.sh, which
# sets BIN, WORK, STORE, NODES, SCORN_TIMEOUT and the segment's
# variables.

# Pids of the processes running now ("" when not running).
NODE_PID_a=
NODE_PID_b=
SERVE_PID=
NBDFUSE_PID=
# The client's block device and mount, when set up.
LOOP_DEV=
MOUNTED=
# Client chain: "fuse" (serve + nbdfuse + loop) or "nbd" (attach).
CLIENT_KIND=fuse
NBD_DEV=

# FS_NS_PID holds the mount namespace the demo mounts in (see start_fs_ns).
FS_NS_PID=

# Where the client chain lives.
CTL_DIR=       # ironaoe control sockets (set by demo.sh)
NBD_SOCK=      # serve's NBD socket
FUSE_DIR=      # nbdfuse's mount point; the device is $FUSE_DIR/disk
MNT=           # the ext4 file system's mount point

# in_netns NS COMMAND... runs COMMAND in network namespace NS, replacing
# itself with it (so $! of a background in_netns is COMMAND's pid). Unlike
# `ip netns exec` it keeps this mount namespace: a private copy would pin
# the demo's FUSE and ext4 mounts (a copy made while they are mounted keeps
# them busy after they are unmounted here).
in_netns() {
	local ns=$1
	shift
	exec nsenter "--net=/run/netns/$ns" "$@"
}

# start_fs_ns makes the private mount namespace in which the demo's FUSE
# and ext4 mounts live, held by a sleeping process. On a machine whose
# mounts are private (no systemd: no shared propagation), every mount
# namespace made meanwhile, such as one for any `ip netns exec` on the
# machine, would get a copy of a mount made in the main namespace and keep
# the file system busy after it is unmounted here. Mounts in a namespace of
# the demo's own are copied nowhere, and vanish with it.
start_fs_ns() {
	unshare --mount --propagation private sleep infinity &
	FS_NS_PID=$!
	wait_until 10 "the demo's mount namespace" fs_ns_ready
}

# fs_ns_ready succeeds once the holder has its own mount namespace.
fs_ns_ready() { [ "$(readlink "/proc/$FS_NS_PID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ]; }

# fs_ns COMMAND... runs COMMAND in the demo's mount namespace, replacing
# itself with it.
fs_ns() { nsenter "--mount=/proc/$FS_NS_PID/ns/mnt" -- "$@"; }

# stop_fs_ns ends the mount namespace (after stop_client unmounted
# everything; whatever is left is detached with it).
stop_fs_ns() {
	stop_pid "$FS_NS_PID" TERM 5
	FS_NS_PID=
}

# The target of the configuration being shown (see use_target): its
# program (ironblade or vblade) and options (-s or none).
TARGET=ironblade-s
TARGET_KIND=ironblade
TARGET_ARGS=(-s)

# use_target NAME selects the configuration NAME: vblade, vblade-s,
# ironblade or ironblade-s.
use_target() {
	TARGET=$1
	TARGET_KIND=${1%-s}
	TARGET_ARGS=()
	[ "$TARGET_KIND" = "$1" ] || TARGET_ARGS=(-s)
}

# target_binary prints the program of the configuration (process nodes).
target_binary() {
	if [ "$TARGET_KIND" = vblade ]; then command -v vblade; else echo "$BIN/ironblade"; fi
}

# start_node HOST LOG starts the target on node HOST (a or b): shelf 1
# slot 0 on the store. ironblade announces itself at start, as vblade does.
# A VM node is booted first if it is down (a fenced node comes back, and
# with DRBD resyncs from its peer).
start_node() {
	local host=$1 log=$2 ns
	if [ "$NODES" = vm ]; then
		vm_node_ready "$host" "$log"
		# Nothing of an earlier round stays in the node's page cache.
		vm_must "$host" 60 drop_caches
		vm_must "$host" 30 "target_start $TARGET_KIND ${TARGET_ARGS[*]}"
		return 0
	fi
	ns=$([ "$host" = a ] && echo "$NS_A" || echo "$NS_B")
	in_netns "$ns" "$(target_binary)" "${TARGET_ARGS[@]}" "${VLAN_ARGS[@]}" 1 0 "$IFACE" "$STORE" >>"$log" 2>&1 &
	printf -v "NODE_PID_$host" %s "$!"
	sleep 0.1
	alive "$!" || { cat "$log" >&2; fail "$TARGET_KIND on node-$host exited at once"; }
}

# node_pid HOST prints the pid of node HOST's target process.
node_pid() { local v=NODE_PID_$1; printf %s "${!v}"; }

# stop_node HOST SIGNAL stops node HOST's target (TERM: cleanly). On a VM
# node, KILL kills the whole guest: that is the fence.
stop_node() {
	if [ "$NODES" = vm ]; then
		if [ "${2:-TERM}" = KILL ]; then
			vm_kill "$1"
		elif [ -n "$(vm_pid "$1")" ] && ! vm_do "$1" 60 target_stop TERM >/dev/null; then
			# A target that may still write must not share the device
			# with the next one: a stop that fails becomes a fence.
			warn "node-$1: the target did not stop cleanly: fencing the node"
			vm_kill "$1"
		fi
		return 0
	fi
	local pid
	pid=$(node_pid "$1")
	[ -n "$pid" ] || return 0
	stop_pid "$pid" "${2:-TERM}" 15
	printf -v "NODE_PID_$1" %s ""
}

# announce HOST makes node HOST's ironblade announce itself (SIGUSR1).
# vblade has no such signal: with it the initiator finds out by itself
# (its scorn timeout).
announce() {
	[ "$TARGET_KIND" = ironblade ] || return 0
	if [ "$NODES" = vm ]; then
		vm_must "$1" 10 target_announce
	else
		kill -USR1 "$(node_pid "$1")"
	fi
}

# client_block_device prints the block device the file system is on.
client_block_device() { [ "$CLIENT_KIND" = nbd ] && echo "$NBD_DEV" || echo "$LOOP_DEV"; }

# start_client LOG [ro] starts a fresh initiator and exposes the device as a
# block device (LOOP_DEV or NBD_DEV), read-only with "ro".
start_client() {
	local log=$1 ro=${2:-}
	local common=(-i "$IFACE" "${VLAN_ARGS[@]}" --control-dir "$CTL_DIR" --scorn-timeout "$SCORN_TIMEOUT")
	if [ "$CLIENT_KIND" = nbd ]; then
		# ironaoe attach prints /dev/nbdN once the kernel has the device.
		in_netns "$NS_CLIENT" "$BIN/ironaoe" attach "${common[@]}" e1.0 >"$WORK/attach.out" 2>>"$log" &
		SERVE_PID=$!
		wait_until 60 "ironaoe attach to print its device" grep -q '^/dev/nbd' "$WORK/attach.out"
		NBD_DEV=$(grep -m1 '^/dev/nbd' "$WORK/attach.out")
		limit_dirty "$NBD_DEV"
		return 0
	fi
	rm -f "$NBD_SOCK"
	in_netns "$NS_CLIENT" "$BIN/ironaoe" serve "${common[@]}" --unix "$NBD_SOCK" e1.0 >>"$log" 2>&1 &
	SERVE_PID=$!
	wait_until 30 "ironaoe serve's socket" test -S "$NBD_SOCK"
	# nbdfuse needs only the Unix socket, so it runs outside the client's
	# network namespace.
	rm -f "$WORK/nbdfuse.pid"
	fs_ns nbdfuse -P "$WORK/nbdfuse.pid" ${ro:+-r} "$FUSE_DIR/disk" "nbd+unix:///e1.0?socket=$NBD_SOCK" >>"$log" 2>&1 &
	NBDFUSE_PID=$!
	wait_until 60 "nbdfuse to connect" nbdfuse_ready
	LOOP_DEV=$(fs_ns losetup -f --show --direct-io=on ${ro:+-r} "$FUSE_DIR/disk")
	echo "loop device $LOOP_DEV, direct I/O $(cat "/sys/block/${LOOP_DEV#/dev/}/loop/dio" 2>/dev/null)" >>"$log"
	limit_dirty "$LOOP_DEV"
}

# limit_dirty DEV keeps little dirty data on DEV, so that cp writes at the
# device's pace rather than filling the page cache first and leaving it all
# to sync. The device outlives the demo (loop devices are reused), so the
# settings it had are kept in DIRTY_SAVED for restore_dirty.
DIRTY_SAVED=
limit_dirty() {
	local bdi=/sys/block/${1#/dev/}/bdi
	[ -w "$bdi/max_bytes" ] && [ -r "$bdi/max_ratio_fine" ] || return 0
	DIRTY_SAVED="$bdi $(cat "$bdi/strict_limit") $(cat "$bdi/max_ratio_fine")"
	echo 1 >"$bdi/strict_limit" || true
	echo $((32 << 20)) >"$bdi/max_bytes" || true
}

# restore_dirty puts back what limit_dirty changed.
restore_dirty() {
	[ -n "$DIRTY_SAVED" ] || return 0
	local bdi strict fine
	read -r bdi strict fine <<<"$DIRTY_SAVED"
	echo "$fine" >"$bdi/max_ratio_fine" 2>/dev/null || warn "could not restore $bdi/max_ratio_fine to $fine"
	echo "$strict" >"$bdi/strict_limit" 2>/dev/null || warn "could not restore $bdi/strict_limit to $strict"
	DIRTY_SAVED=
}

# nbdfuse_ready succeeds once nbdfuse wrote its pid file (it has connected
# and mounted); it fails the demo if nbdfuse exited.
nbdfuse_ready() {
	alive "$NBDFUSE_PID" || fail "nbdfuse exited: see the client log"
	[ -s "$WORK/nbdfuse.pid" ]
}

# mount_fs [OPTIONS] mounts the client's block device on MNT.
mount_fs() {
	fs_ns mount -o "noatime${1:+,$1}" "$(client_block_device)" "$MNT"
	MOUNTED=1
}

# umount_fs unmounts MNT (retrying while something still holds it).
umount_fs() {
	[ -n "$MOUNTED" ] || return 0
	if ! retry 50 0.1 fs_ns umount "$MNT"; then
		warn "$MNT busy: detaching it lazily"
		fs_ns umount -l "$MNT" || true
	fi
	MOUNTED=
}

# stop_client tears the client chain down, last made first: mount, loop
# device, nbdfuse, then the initiator (SIGTERM: it finishes and flushes).
stop_client() {
	umount_fs
	restore_dirty
	if [ -n "$LOOP_DEV" ]; then
		losetup -d "$LOOP_DEV" 2>/dev/null || warn "losetup -d $LOOP_DEV failed"
		LOOP_DEV=
	fi
	if [ -n "$NBDFUSE_PID" ]; then
		# The loop device lets go of the file asynchronously: retry.
		if ! retry 50 0.1 fs_ns fusermount3 -u "$FUSE_DIR"; then
			warn "$FUSE_DIR busy: detaching it lazily"
			fs_ns fusermount3 -u -z "$FUSE_DIR" 2>/dev/null || true
		fi
		stop_pid "$NBDFUSE_PID" TERM 10
		NBDFUSE_PID=
	fi
	if [ -n "$SERVE_PID" ]; then
		# A second SIGTERM would make ironaoe exit at once; give it time to
		# flush first.
		stop_pid "$SERVE_PID" TERM 20
		SERVE_PID=
		NBD_DEV=
	fi
}

# drop_caches writes back and drops the page cache, so that what is read
# next comes from the device.
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# check_sums DIR SUMS OUT checks the files listed in SUMS (sha512sum's
# format, relative names) under DIR, writing sha512sum's report to OUT; it
# prints "INTACT CORRUPT" (a missing or unreadable file is corrupt).
check_sums() {
	local dir=$1 sums=$2 out=$3 total intact
	total=$(wc -l <"$sums")
	# shellcheck disable=SC2016 # expanded by that sh
	fs_ns sh -c 'cd "$1" && sha512sum -c "$2"' check "$dir" "$sums" >"$out" 2>&1 || true
	intact=$(grep -c ': OK$' "$out" || true)
	echo "$intact $((total - intact))"
}
