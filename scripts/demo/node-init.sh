#!/bin/busybox sh
# shellcheck shell=dash
# /init of a SAN node guest of the failover demo (--nodes vm, see
# docs/demo.md). scripts/demo/vm.sh puts it in the initramfs with busybox,
# the kernel modules, the targets (ironblade, vblade) and DRBD's tools.
#
# The kernel command line says who the node is:
#   ib.node=a|b        the node's name (its hostname is node-a or node-b)
#   ib.mtu=N           the MTU of the AoE segment
#   ib.vlan=VID        AoE's VLAN (0: untagged), through a kernel VLAN interface
#   ib.storage=drbd|shared
#
# NICs: eth0 is on the AoE segment, eth1 on the replication link (DRBD,
# 10.99.0.1 for node a, .2 for b). Disk: /dev/vda, the node's own virtual
# disk (drbd) or the image both nodes share (shared). The 9p share /share
# carries the host's commands in: the host writes ctl/N.req (one shell
# command line, run with the functions below), the guest answers N.ok or
# N.err with the output. The node runs until the host kills or stops it.

/bin/busybox --install -s /bin
# /sbin first: iproute2's ip and DRBD's tools, not busybox's applets.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /mnt /share /var/lib/drbd /var/run/drbd /run/lock
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /var/run/drbd /var/lock

arg() { sed -n "s/.*ib\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
# The host's probe of its accelerator: booting this far is the answer.
if [ "$(arg probe)" = 1 ]; then
	echo "node-init: probe ok" >/dev/console
	poweroff -f
fi
NODE=$(arg node)
MTU=$(arg mtu)
VLAN=$(arg vlan)
STORAGE=$(arg storage)
hostname "node-$NODE"

# kmod_load NAME insmods NAME's dependencies (lib/modules/NAME.deps, in
# order, NAME last) that are not loaded yet.
kmod_load() {
	for ko in $(cat "/lib/modules/$1.deps"); do
		mod=$(basename "$ko" .ko | tr - _)
		[ -d "/sys/module/$mod" ] && continue
		insmod "/lib/modules/$ko" 2>/dev/null || [ "$(basename "$ko" .ko)" != "$1" ] || return 1
	done
}

fail_boot() {
	echo "node-init: FAILED: $*" >/dev/kmsg
	echo "node-init: FAILED: $*" >&2
	poweroff -f
}

for m in virtio_pci virtio_net virtio_blk 9pnet_virtio 9p 8021q drbd; do
	kmod_load "$m" || fail_boot "cannot load module $m"
done

i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none share /share 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -ge 100 ] && fail_boot "cannot mount the 9p share"
	sleep 0.1
done
exec >>/share/node.log 2>&1
echo "node-init: node-$NODE up, $(uname -r), storage $STORAGE, MTU $MTU, VLAN $VLAN"

# The network: AoE on eth0 (or its VLAN), DRBD on eth1.
ip link set lo up
ip link set eth0 mtu "$MTU" up
AOE_IF=eth0
if [ "${VLAN:-0}" -ne 0 ]; then
	ip link add link eth0 name "eth0.$VLAN" type vlan id "$VLAN" || fail_boot "cannot make eth0.$VLAN"
	ip link set "eth0.$VLAN" up
	AOE_IF=eth0.$VLAN
fi
ip link set eth1 mtu 9000 up
ip addr add "10.99.0.$([ "$NODE" = a ] && echo 1 || echo 2)/24" dev eth1

DEVICE=/dev/vda
if [ "$STORAGE" = drbd ]; then
	DEVICE=/dev/drbd0
	# Protocol C: a write completes on the primary once it is on both
	# nodes' disks (their volatile caches flushed where a flush was asked).
	# Dual-primary, as in the field notes: both nodes serve the device,
	# the initiator uses one. The short timeouts let the survivor go on
	# alone about a second after its peer is fenced.
	cat >/etc/drbd.conf <<EOF
resource r0 {
	net {
		protocol C;
		allow-two-primaries yes;
		after-sb-0pri discard-zero-changes;
		after-sb-1pri discard-secondary;
		after-sb-2pri disconnect;
		timeout 10; ping-int 1; ping-timeout 5; connect-int 1; ko-count 0;
		max-buffers 8000; max-epoch-size 8000; sndbuf-size 0; rcvbuf-size 0;
	}
	disk { resync-rate 400M; c-plan-ahead 0; al-extents 3389; }
	on node-a { device /dev/drbd0; disk /dev/vda; address 10.99.0.1:7789; meta-disk internal; }
	on node-b { device /dev/drbd0; disk /dev/vda; address 10.99.0.2:7789; meta-disk internal; }
}
EOF
fi

# --- what the host may ask (ctl/*.req) --------------------------------------

# drbd_up fresh|rejoin attaches the disk and connects to the peer: fresh
# writes new metadata first (a blank disk), rejoin keeps it (a node back
# after a fence, which resyncs from its peer).
drbd_up() {
	if [ "$1" = fresh ]; then
		yes yes | drbdadm -- --force create-md r0 || return 1
	fi
	drbdadm up r0
}

# drbd_state prints DRBD's connection, roles and disk states.
drbd_state() { sed -n 's/^ *0: *//p' /proc/drbd | head -n 1; }

# drbd_wait WORDS... waits (up to 600 s) until /proc/drbd shows each WORD.
drbd_wait() {
	i=0
	while :; do
		s=$(drbd_state)
		ok=1
		for w in "$@"; do
			case " $s " in *" $w "*) ;; *) ok= ;; esac
		done
		[ -n "$ok" ] && echo "$s" && return 0
		i=$((i + 1))
		[ "$i" -ge 6000 ] && echo "timed out: $s" && return 1
		sleep 0.1
	done
}

# drbd_skip_sync marks two blank disks as equal, without a full resync.
drbd_skip_sync() { drbdadm -- --clear-bitmap new-current-uuid r0; }

drbd_primary() { drbdadm primary r0; }

# target_start KIND [OPTION...] starts KIND (ironblade or vblade) as shelf
# 1 slot 0 on the AoE interface and the node's device, in the background.
target_start() {
	kind=$1
	shift
	echo "--- $(date +%T) $kind $* 1 0 $AOE_IF $DEVICE" >>/share/target.log
	"/usr/sbin/$kind" "$@" 1 0 "$AOE_IF" "$DEVICE" >>/share/target.log 2>&1 &
	pid=$!
	echo "$pid" >/run/target.pid
	# A target that cannot open its device or interface exits at once
	# (which, on this slow guest, may take a second).
	sleep 2
	running "$pid" || { tail -n 3 /share/target.log; return 1; }
	echo "pid $pid"
}

# running PID succeeds while PID runs. The targets' parent is this /init,
# which does not reap them: an exited one stays a zombie.
running() { [ -e "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat")" != Z ]; }

# target_stop SIGNAL stops the target and waits until it has exited (and,
# its device closed, the kernel wrote back what it cached of it).
target_stop() {
	[ -f /run/target.pid ] || return 0
	pid=$(cat /run/target.pid)
	kill "-${1:-TERM}" "$pid" 2>/dev/null
	i=0
	while running "$pid"; do
		i=$((i + 1))
		[ "$i" -ge 300 ] && kill -KILL "$pid"
		sleep 0.1
	done
	rm -f /run/target.pid
	echo "--- $(date +%T) stopped" >>/share/target.log
}

# target_announce makes ironblade announce itself (vblade cannot).
target_announce() { kill -USR1 "$(cat /run/target.pid)"; }

drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# dirty prints how much of the page cache is dirty or being written back.
dirty() { grep -E '^(Dirty|Writeback):' /proc/meminfo | tr -s ' ' | tr '\n' ' '; }

echo "node-init: ready ($AOE_IF, device $DEVICE)"
: >/share/ready
cd /share/ctl || fail_boot "no /share/ctl"
while :; do
	for req in *.req; do
		[ -e "$req" ] || continue
		base=${req%.req}
		mv "$req" "$base.run"
		if (eval "$(cat "$base.run")") >"$base.out" 2>&1; then
			mv "$base.out" "$base.ok"
		else
			mv "$base.out" "$base.err"
		fi
	done
	sleep 0.05
done
