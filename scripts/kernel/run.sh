#!/usr/bin/env bash
# Proves ironblade and ironaoe against the Linux kernel's own AoE and NBD
# clients: boots Debian's bookworm kernel (which has aoe.ko, nbd.ko and
# 8021q.ko) under qemu (TCG, one vCPU) and runs guest-checks.sh in it
# against binaries built from this tree. See docs/kernel-tests.md.
#
#   sudo bash scripts/kernel/run.sh        (or: sudo make test-kernel)
#
# Network: the guest's virtio NIC is a tap in namespace ibk-vm-ID, bridged
# to a veth whose other end is in namespace ibk-tg-ID, where the targets
# (ironblade, vblade) run. Nothing touches the machine's own interfaces.
# The guest asks for targets, MTU changes and checks of the backing files
# over a 9p share (see serve_guest below).
#
# Every run is bounded (qemu runs under timeout; each guest step has a
# watchdog that saves the aoe driver's state if it hangs), removes what it
# created on exit, and keeps its logs in out/kernel/<timestamp>/. It exits
# non-zero if a check fails, if the guest hangs or if it does not finish.
#
# Environment:
#   KERNEL_CACHE   where the kernel package is downloaded and unpacked
#                  (default /var/cache/ironblade-kernel)
#   KERNEL_PKG     the kernel package (default: what linux-image-amd64
#                  depends on, e.g. linux-image-6.1.0-56-amd64)
#   OUT_DIR        the results directory (default out/kernel/<timestamp>)
#   CHECKS         which checks (default "ironaoe aoe vlan throughput";
#                  "watchdog" adds a self-test of the hang watchdog)
#   MTUS           the MTUs of the aoe checks (default "1500 9000")
#   DATA_MIB       data written and read back per case (default 64)
#   GUEST_SECS     the limit on the guest's whole run (default 720)
#   STEP_SECS      the guest's watchdog for one transfer (default 150)
#   GUEST_CPUS     the guest's vCPUs (default 1: with 2 the kernel's aoe
#                  driver can hang for good on a read, see the docs)
set -euo pipefail

cd "$(dirname "$0")/../.."
top=$PWD
here=$top/scripts/kernel

KERNEL_CACHE=${KERNEL_CACHE:-/var/cache/ironblade-kernel}
KERNEL_PKG=${KERNEL_PKG:-}
OUT_DIR=${OUT_DIR:-$top/out/kernel/$(date +%Y%m%d-%H%M%S)}
CHECKS=${CHECKS:-ironaoe aoe vlan throughput}
MTUS=${MTUS:-1500 9000}
DATA_MIB=${DATA_MIB:-64}
GUEST_SECS=${GUEST_SECS:-720}
STEP_SECS=${STEP_SECS:-150}
GUEST_MEM_MIB=${GUEST_MEM_MIB:-1024}
GUEST_CPUS=${GUEST_CPUS:-1}
VLAN_ID=${VLAN_ID:-7}
# The aoe disks are a little larger than the data, so that the size check
# means something; the ironaoe disk holds an ext4 file system.
DISK_MIB=$((DATA_MIB + 8))
FS_MIB=${FS_MIB:-256}
# Generous, so that a target restarted during a read is not given up.
AOE_DEADSECS=120

export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH
export LC_ALL=C

started=$SECONDS
say() { printf '\n==> [%3ds] %s\n' "$((SECONDS - started))" "$*"; }
die() {
	printf 'test-kernel: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces and a tap device): sudo bash $0"

id=$(printf '%04x%04x' $RANDOM $RANDOM)
ns_vm=ibk-vm-$id
ns_tg=ibk-tg-$id
if_tap=ibktap
if_br=ibkbr
if_vm=ibkv0 # in ns_vm, on the bridge
if_tg=ibkv1 # in ns_tg, where the targets listen
work=
server_pid=
qemu_pid=

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	set +e
	# timeout passes the signal on to qemu; the namespace sweep below
	# catches anything left.
	[ -n "$qemu_pid" ] && kill -TERM "$qemu_pid" 2>/dev/null
	[ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	for ns in "$ns_tg" "$ns_vm"; do
		if ip netns list | grep -qw "$ns"; then
			ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
			sleep 0.2
			ip netns del "$ns" 2>/dev/null
		fi
	done
	[ -n "$work" ] && rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT_DIR/targets"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
exec > >(tee -a "$OUT_DIR/run.log") 2>&1
say "results in $OUT_DIR"

# --- what the harness needs on the host ---------------------------------
packages=(qemu-system-x86 busybox-static e2fsprogs iproute2 kmod vblade coreutils)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	say "installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ -c /dev/net/tun ] || modprobe tun || die "no /dev/net/tun: the tun module is needed for the guest's NIC"

# --- the guest kernel: Debian's, unpacked without installing it -----------
# shellcheck source=scripts/kernel/kernel.sh
source "$here/kernel.sh"
kernel_fetch "$KERNEL_CACHE" "$KERNEL_PKG"
kver=$KVER
vmlinuz=$VMLINUZ

work=$(mktemp -d /var/tmp/ironblade-kernel.XXXXXX)
share=$work/share
mkdir -p "$work/bin" "$work/disks" "$share/ctl" "$share/results" "$share/data"
: >"$share/results/checks.tsv"
: >"$share/results/throughput.tsv"

# host_result CHECK STATUS DETAIL records a result the host found itself.
host_result() {
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$share/results/checks.tsv"
}

# --- binaries from the tree: static, so they run in the guest too ---------
say "building ironblade and ironaoe (CGO_ENABLED=0)"
version=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
build() {
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-X main.version=$version" -o "$work/bin/$1" "./cmd/$1" \
		>"$OUT_DIR/build-$1.log" 2>&1
}
build ironblade || die "ironblade does not build: $(tail -n 5 "$OUT_DIR/build-ironblade.log")"
if [[ " $CHECKS " == *" ironaoe "* ]] && ! build ironaoe; then
	host_result ironaoe-nbd FAIL "ironaoe does not build: build-ironaoe.log"
	CHECKS=${CHECKS//ironaoe/}
fi
have_vlan=0
"$work/bin/ironblade" --help 2>&1 | grep -q -- '--vlan' && have_vlan=1

# --- the initramfs: busybox, modules, GNU tools, ironaoe, the checks ------
say "building the initramfs (kernel $kver)"
ird=$work/initramfs
mkdir -p "$ird"/{bin,usr/bin,usr/sbin,etc/kernel-tests,lib/modules,proc,sys,dev,tmp,run,mnt,share,root}
cp /bin/busybox "$ird/bin/busybox"
install -m 755 "$here/guest-init.sh" "$ird/init"
install -m 644 "$here/guest-checks.sh" "$ird/etc/kernel-tests/guest-checks.sh"
initramfs_modules "$ird" virtio_pci virtio_net 9pnet_virtio 9p ext4 aoe nbd 8021q
copy_binary() { initramfs_binary "$ird" "$1" "$2"; }
copy_binary /usr/bin/dd /usr/bin/dd
copy_binary /usr/bin/sha512sum /usr/bin/sha512sum
copy_binary /usr/sbin/mke2fs /usr/sbin/mkfs.ext4
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$ird/etc/"
[ -x "$work/bin/ironaoe" ] && install -m 755 "$work/bin/ironaoe" "$ird/usr/bin/ironaoe"
(cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null) >"$work/initramfs.cpio"

# --- the share: data, a file set, the guest's configuration ---------------
say "preparing $DATA_MIB MiB of random data and a file set"
head -c $((DATA_MIB << 20)) /dev/urandom >"$share/data/data.bin"
sha512sum <"$share/data/data.bin" | cut -d' ' -f1 >"$share/data/data.sha512"
# About 24 MiB in 200 files of assorted sizes in nested directories, two
# of them large, one empty.
mkdir -p "$share/fileset"
for d in 0 1 2 3 4 5 6 7; do
	mkdir -p "$share/fileset/d$d/sub"
	for f in $(seq 0 23); do
		head -c $(((RANDOM * 7 + f) % 196608)) /dev/urandom >"$share/fileset/d$d/$([ $((f % 3)) = 0 ] && echo sub/)f$f.bin"
	done
done
head -c $((4 << 20)) /dev/urandom >"$share/fileset/large1.bin"
head -c $((3 << 20 | 12345)) /dev/urandom >"$share/fileset/large2.bin"
: >"$share/fileset/empty"
(cd "$share" && find fileset -type f | sort | xargs sha512sum) >"$share/fileset.sha512"
# The key of the keyed-export check; it stays on the host.
head -c 32 /dev/urandom >"$work/auth.key"
chmod 600 "$work/auth.key"
have_auth=no
"$work/bin/ironblade" --help 2>&1 | grep -q -- --auth-key && have_auth=yes
cat >"$share/config.sh" <<EOF
CHECKS="$CHECKS"
AUTH_KEY=$work/auth.key
HAVE_AUTH=$have_auth
MTUS="$MTUS"
DATA_MIB=$DATA_MIB
DISK_MIB=$DISK_MIB
FS_MIB=$FS_MIB
STEP_SECS=$STEP_SECS
AOE_DEADSECS=$AOE_DEADSECS
HAVE_VLAN=$have_vlan
VLAN_ID=$VLAN_ID
EOF

# --- the network ----------------------------------------------------------
say "network: tap $if_tap + veth $if_vm on bridge $if_br in $ns_vm, veth $if_tg in $ns_tg"
ip netns add "$ns_vm"
ip netns add "$ns_tg"
for ns in "$ns_vm" "$ns_tg"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip -n "$ns" link set lo up
done
ip -n "$ns_vm" tuntap add dev "$if_tap" mode tap
ip -n "$ns_vm" link add "$if_br" type bridge
ip link add "$if_vm" netns "$ns_vm" type veth peer name "$if_tg" netns "$ns_tg"
ip -n "$ns_vm" link set "$if_tap" master "$if_br"
ip -n "$ns_vm" link set "$if_vm" master "$if_br"
for dev in "$if_tap" "$if_vm" "$if_br"; do ip -n "$ns_vm" link set "$dev" up; done
ip -n "$ns_tg" link set "$if_tg" up

# --- what the guest may ask of the host -----------------------------------
declare -A target_pid target_cmd

# start NAME KIND SIZE_MIB SHELF SLOT [OPTION...] runs ironblade or vblade
# in ns_tg on a file of SIZE_MIB (created once, kept across restarts).
rpc_start() {
	local name=$1 kind=$2 size=$3 shelf=$4 slot=$5 bin img
	shift 5
	case $kind in
	ironblade) bin=$work/bin/ironblade ;;
	vblade) bin=$(command -v vblade) ;;
	*) echo "unknown target kind $kind" && return 1 ;;
	esac
	img=$work/disks/$name.img
	[ -e "$img" ] || truncate -s "${size}M" "$img"
	target_cmd[$name]="$bin $* $shelf $slot $if_tg $img"
	rpc_launch "$name"
}

# rpc_launch NAME runs NAME's command line (again). The paths in it have
# no spaces (mktemp), so it is split on blanks.
rpc_launch() {
	local name=$1
	echo "--- $(date +%T) ${target_cmd[$name]}" >>"$OUT_DIR/targets/$name.log"
	# shellcheck disable=SC2086
	ip netns exec "$ns_tg" ${target_cmd[$name]} >>"$OUT_DIR/targets/$name.log" 2>&1 &
	target_pid[$name]=$!
	sleep 0.3
	if ! kill -0 "${target_pid[$name]}" 2>/dev/null; then
		echo "$name exited at once: $(tail -n 2 "$OUT_DIR/targets/$name.log")"
		return 1
	fi
	echo "${target_pid[$name]}"
}

# stop NAME: SIGTERM, then SIGKILL after 10 s.
rpc_stop() {
	local pid=${target_pid[$1]:-} i
	[ -n "$pid" ] || { echo "no target $1" && return 1; }
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null && echo "$1 needed SIGKILL"
	wait "$pid" 2>/dev/null
	echo "--- $(date +%T) stopped, status $?" >>"$OUT_DIR/targets/$1.log"
	unset "target_pid[$1]"
}

# restart NAME SECS: SIGKILL, SECS seconds down, then the same command.
rpc_restart() {
	local pid=${target_pid[$1]:-}
	[ -n "$pid" ] || { echo "no target $1" && return 1; }
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	echo "--- $(date +%T) killed (SIGKILL) for a restart in $2 s" >>"$OUT_DIR/targets/$1.log"
	sleep "$2"
	rpc_launch "$1"
}

# alive NAME: whether NAME's process still runs.
rpc_alive() {
	local pid=${target_pid[$1]:-}
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$1 running" && return 0
	echo "$1 is not running: $(tail -n 2 "$OUT_DIR/targets/$1.log" | tr '\n' ' ')"
	return 1
}

# mtu N sets the MTU of every host-side link, the bridge last.
rpc_mtu() {
	ip -n "$ns_vm" link set "$if_tap" mtu "$1" &&
		ip -n "$ns_vm" link set "$if_vm" mtu "$1" &&
		ip -n "$ns_tg" link set "$if_tg" mtu "$1" &&
		ip -n "$ns_vm" link set "$if_br" mtu "$1"
}

# sha512 NAME MIB prints the SHA-512 of the first MIB MiB of NAME's file.
rpc_sha512() {
	head -c $(($2 << 20)) "$work/disks/$1.img" | sha512sum | cut -d' ' -f1
}

# fsck NAME checks the ext4 file system in NAME's file, read-only.
rpc_fsck() {
	e2fsck -fn "$work/disks/$1.img" 2>&1
}

# serve_guest answers the guest's requests: /share/ctl/NNNN.req holds one
# command line; the answer goes to NNNN.ok or NNNN.err, written under
# another name and renamed so that the guest never sees half of it.
serve_guest() {
	set +e
	trap 'for n in "${!target_pid[@]}"; do kill -KILL "${target_pid[$n]}" 2>/dev/null; done; exit 0' TERM
	local req base cmd args status
	while :; do
		for req in "$share"/ctl/*.req; do
			[ -e "$req" ] || continue
			base=${req%.req}
			read -r cmd args <"$req"
			mv "$req" "$base.taken"
			case $cmd in
			start | stop | restart | alive | mtu | sha512 | fsck)
				# shellcheck disable=SC2086
				rpc_$cmd $args >"$base.out" 2>&1
				status=$?
				;;
			*)
				echo "unknown request $cmd" >"$base.out"
				status=1
				;;
			esac
			printf '[%4ds] guest: %s %s -> %s: %s\n' "$((SECONDS - started))" "$cmd" "$args" "$status" \
				"$(head -c 200 "$base.out" | tr '\n' ' ')" >>"$OUT_DIR/host.log"
			if [ "$status" = 0 ]; then mv "$base.out" "$base.ok"; else mv "$base.out" "$base.err"; fi
		done
		sleep 0.05
	done
}

serve_guest &
server_pid=$!

# --- the guest -------------------------------------------------------------
say "booting the guest: $KERNEL_PKG, $GUEST_CPUS vCPU, TCG, $GUEST_MEM_MIB MiB; at most $GUEST_SECS s"
guest_start=$SECONDS
set +e
timeout --kill-after=10 "$GUEST_SECS" ip netns exec "$ns_vm" \
	qemu-system-x86_64 -accel tcg -cpu max -smp "$GUEST_CPUS" -m "$GUEST_MEM_MIB" \
	-nodefaults -no-user-config -display none -no-reboot \
	-serial stdio -monitor none </dev/null \
	-kernel "$vmlinuz" -initrd "$work/initramfs.cpio" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off random.trust_cpu=on" \
	-netdev "tap,id=net0,ifname=$if_tap,script=no,downscript=no" \
	-device "virtio-net-pci,netdev=net0,mac=52:54:00:1b:1a:de,romfile=" \
	-fsdev "local,id=fs0,path=$share,security_model=none" \
	-device "virtio-9p-pci,fsdev=fs0,mount_tag=share" \
	> >(tee "$OUT_DIR/console.log") 2>&1 &
qemu_pid=$!
wait "$qemu_pid"
qemu_status=$?
qemu_pid=
set -e
guest_secs=$((SECONDS - guest_start))
kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
server_pid=

# --- results ----------------------------------------------------------------
cp -r "$share/results" "$OUT_DIR/guest"
cp "$share/config.sh" "$share/fileset.sha512" "$OUT_DIR/guest/"
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
	host_result guest FAIL "the guest did not finish within $GUEST_SECS s (last: $(grep -v '^$' "$OUT_DIR/guest/guest.log" 2>/dev/null | tail -n 1))"
elif ! grep -q 'checks done' "$OUT_DIR/guest/guest.log" 2>/dev/null; then
	host_result guest FAIL "the guest stopped before the end of the checks (qemu exit $qemu_status): see console.log"
fi
cp "$share/results/checks.tsv" "$OUT_DIR/guest/checks.tsv" 2>/dev/null || true

{
	echo
	echo "kernel tests: $KERNEL_PKG, guest $guest_secs s, whole run $((SECONDS - started)) s"
	echo
	printf '%-36s %-5s %s\n' CHECK RESULT DETAIL
	awk -F'\t' '{
		status = $2
		if ($1 ~ /^ref-/ && status == "FAIL") status = "fail*"
		printf "%-36s %-5s %s\n", $1, status, $3
	}' "$OUT_DIR/guest/checks.tsv"
	if grep -q '^ref-' "$OUT_DIR/guest/checks.tsv"; then
		echo "(ref-*: vblade, for comparison only; a failure there is marked fail* and does not count)"
	fi
	if [ -s "$OUT_DIR/guest/throughput.tsv" ]; then
		echo
		echo "throughput in the guest: GNU dd, $DATA_MIB MiB, bs=1M, O_DIRECT (MB/s; TCG, $GUEST_CPUS vCPU)"
		printf '%-22s %5s %5s %8s %8s\n' TARGET MTU SYNC WRITE READ
		sort -t"$(printf '\t')" -k2,2n -k3,3 -k1,1 "$OUT_DIR/guest/throughput.tsv" |
			awk -F'\t' '{ printf "%-22s %5s %5s %8s %8s\n", $1, $2, ($3 == "yes" ? "-s" : "no"), $4, $5 }'
	fi
	ls "$OUT_DIR"/guest/hang-*.txt >/dev/null 2>&1 && echo && echo "HANGS (driver state saved):" && ls "$OUT_DIR"/guest/hang-*.txt
	echo
	echo "logs: $OUT_DIR"
} | tee "$OUT_DIR/summary.txt"

failed=$(awk -F'\t' '$2 == "FAIL" && $1 !~ /^ref-/' "$OUT_DIR/guest/checks.tsv" | wc -l)
passed=$(awk -F'\t' '$2 == "PASS" && $1 !~ /^ref-/' "$OUT_DIR/guest/checks.tsv" | wc -l)
if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
	say "test-kernel: FAIL ($failed failed, $passed passed)"
	exit 1
fi
say "test-kernel: PASS ($passed passed)"
