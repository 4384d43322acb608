#!/usr/bin/env bash
# shellcheck disable=SC2015 # "valid && valid || bad ...", bad exits: meant
# The failover demo (make demo): two SAN nodes serve one shared store as the
# same AoE shelf.slot; a client copies file sets onto an ext4 file system on
# it while node A is migrated away (SIGTERM, then B) or fenced (link cut and
# SIGKILL, then B), and every file is checked afterwards. It reports, for
# each event, the I/O stall, the throughput before and after and the files
# intact or corrupt, as a table and a timeline plot. See docs/demo.md.
#
#   sudo bash scripts/demo.sh [options]        (or: sudo make demo DEMO_ARGS="...")
#
# Everything runs on this machine: a bridge in a network namespace of its
# own is the switch; namespaces node-a, node-b and client are the hosts.
# Everything it creates (namespaces, processes, mounts, loop devices, FUSE
# mounts, files) is removed on exit, failure or Ctrl-C; the report stays in
# out/demo/.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/demo.sh [options]

  --nodes KIND        vm: each SAN node is a qemu guest with its own kernel and
                      page cache, fenced by killing it (default); process: the
                      nodes are processes on this host sharing one file (fast)
  --targets LIST      target configurations to compare, comma-separated:
                      vblade, vblade-s, ironblade, ironblade-s, or all
                      (default: all with vm nodes, ironblade-s with process)
  --storage KIND      vm nodes: drbd (each node's own disk, DRBD protocol C,
                      dual-primary; default) or shared (one image both attach)
  --set LIST          file sets to copy: 1M (400 x 1 MiB), 10M (40 x 10 MiB),
                      100M (4 x 100 MiB), comma-separated, or all
                      (default: 1M with vm nodes, all with process)
  --events LIST       none (a copy with no fault), migrate, fence, comma-
                      separated (default: none,fence with vm nodes,
                      migrate,fence with process)
  --repeat N          each migrate or fence N times per configuration and set
  --mode MODE         standby: node B serves the store all along, as with
                      dual-primary DRBD (default); cold: B starts only after
                      the event
  --async             the same as --targets ironblade
  --scorn-timeout D   the initiator's scorn timeout (default 1s; 5s with vm
                      nodes, whose emulated CPUs stall a busy target's
                      answers for seconds while the guest writes back)
  --fence-delay D     time between fencing A and acting on B (default 500ms)
  --no-announce       standby mode: do not make B announce itself after the
                      event; the initiator notices A's failure by itself
                      (always so with vblade, which cannot be told to announce)
  --quick             a tenth of each set (40 x 1 MiB, 4 x 10 MiB, 1 x 100 MiB);
                      the default with vm nodes where KVM does not work: under
                      TCG vblade -s writes 400 MiB in about 20 minutes
  --full              the whole sets, even on TCG guests
  --vlan VID          VLAN of the AoE traffic, 0 for untagged (default 42)
  --mtu N             MTU of the segment (default 9000)
  --trigger PCT       fail over once PCT % of a set reached the device (default 45)
  --client KIND       fuse (ironaoe serve, nbdfuse, loop), nbd (ironaoe attach)
                      or auto: nbd where the nbd module loads (default)
  --remount-check     also check every file after a remount over the initiator
                      that saw the event (always so with process nodes)
  --out DIR           where the report goes (default out/demo)
  --bin DIR           the ironblade, ironaoe and ironbench binaries (default bin;
                      built (or brought up to date) with make build)
  --keep              keep the work directory (/var/tmp/ironblade-demo.*)
  -h, --help          this help
EOF
}

DEMO_ARGV="$*"
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/demo/lib.sh
source scripts/demo/lib.sh

# Options.
NODES=vm
TARGETS=
STORAGE=drbd
SETS=
EVENTS=
REPEAT=1
REMOUNT_CHECK=
MODE=standby
SCORN_TIMEOUT=
FENCE_DELAY=500ms
ANNOUNCE=1
QUICK=
VLAN=42
MTU=9000
TRIGGER_PCT=45
CLIENT=auto
OUT=out/demo
BIN=bin
KEEP=

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "demo: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
	case $1 in
	--set) need_value "$@"; SETS=$2; shift ;;
	--events) need_value "$@"; EVENTS=$2; shift ;;
	--mode) need_value "$@"; MODE=$2; shift ;;
	--async) TARGETS=ironblade ;;
	--nodes) need_value "$@"; NODES=$2; shift ;;
	--targets) need_value "$@"; TARGETS=$2; shift ;;
	--storage) need_value "$@"; STORAGE=$2; shift ;;
	--repeat) need_value "$@"; REPEAT=$2; shift ;;
	--remount-check) REMOUNT_CHECK=1 ;;
	--scorn-timeout) need_value "$@"; SCORN_TIMEOUT=$2; shift ;;
	--fence-delay) need_value "$@"; FENCE_DELAY=$2; shift ;;
	--no-announce) ANNOUNCE= ;;
	--quick) QUICK=1 ;;
	--full) QUICK=full ;;
	--vlan) need_value "$@"; VLAN=$2; shift ;;
	--mtu) need_value "$@"; MTU=$2; shift ;;
	--trigger) need_value "$@"; TRIGGER_PCT=$2; shift ;;
	--client) need_value "$@"; CLIENT=$2; shift ;;
	--out) need_value "$@"; OUT=$2; shift ;;
	--bin) need_value "$@"; BIN=$2; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "demo: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

bad() { echo "demo: $*" >&2; exit 2; }
# The sets: files per set and MiB per file.
declare -A SET_FILES=([1M]=400 [10M]=40 [100M]=4)
declare -A SET_MIB=([1M]=1 [10M]=10 [100M]=100)
case $NODES in
vm) : "${SETS:=1M}" "${EVENTS:=none,fence}" "${TARGETS:=all}" "${SCORN_TIMEOUT:=5s}" ;;
process)
	: "${SETS:=all}" "${EVENTS:=migrate,fence}" "${TARGETS:=ironblade-s}" "${SCORN_TIMEOUT:=1s}"
	REMOUNT_CHECK=1
	;;
*) bad "--nodes $NODES: want vm or process" ;;
esac
case $STORAGE in drbd | shared) ;; *) bad "--storage $STORAGE: want drbd or shared" ;; esac
[ "$NODES" = vm ] || STORAGE="file"
[ "$TARGETS" = all ] && TARGETS=vblade,vblade-s,ironblade,ironblade-s
IFS=, read -ra TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
	case $t in vblade | vblade-s | ironblade | ironblade-s) ;; *) bad "--targets $t: want vblade, vblade-s, ironblade, ironblade-s or all" ;; esac
done
[[ $REPEAT =~ ^[0-9]+$ ]] && [ "$REPEAT" -ge 1 ] || bad "--repeat $REPEAT: want a count of 1 or more"
[ "$SETS" = all ] && SETS=1M,10M,100M
IFS=, read -ra SET_LIST <<<"$SETS"
for s in "${SET_LIST[@]}"; do
	[ -n "${SET_FILES[$s]:-}" ] || bad "--set $s: want 1M, 10M, 100M or all"
done
# scale_sets takes a tenth of each set with --quick.
scale_sets() {
	local s
	[ -n "$QUICK" ] || return 0
	for s in "${SET_LIST[@]}"; do SET_FILES[$s]=$(((SET_FILES[$s] + 9) / 10)); done
}
IFS=, read -ra EVENT_LIST <<<"$EVENTS"
for e in "${EVENT_LIST[@]}"; do
	case $e in none | migrate | fence) ;; *) bad "--events $e: want none, migrate or fence" ;; esac
done
# Rounds per configuration and set: each none once, each event REPEAT times.
ROUNDS_PER_SET=0
for e in "${EVENT_LIST[@]}"; do
	if [ "$e" = none ]; then ROUNDS_PER_SET=$((ROUNDS_PER_SET + 1)); else ROUNDS_PER_SET=$((ROUNDS_PER_SET + REPEAT)); fi
done
case $MODE in standby | cold) ;; *) bad "--mode $MODE: want standby or cold" ;; esac
[ "$MODE" = standby ] || [ -n "$ANNOUNCE" ] || bad "--no-announce: cold mode starts B, and ironblade announces itself at start"
duration_s "$SCORN_TIMEOUT" >/dev/null || bad "--scorn-timeout $SCORN_TIMEOUT: want a duration such as 1s or 500ms"
FENCE_DELAY_S=$(duration_s "$FENCE_DELAY") || bad "--fence-delay $FENCE_DELAY: want a duration such as 1s or 500ms"
[[ $VLAN =~ ^[0-9]+$ ]] && [ "$VLAN" -le 4094 ] || bad "--vlan $VLAN: want 0 (untagged) to 4094"
[[ $MTU =~ ^[0-9]+$ ]] && [ "$MTU" -ge 1280 ] && [ "$MTU" -le 9000 ] || bad "--mtu $MTU: want 1280 to 9000"
[[ $TRIGGER_PCT =~ ^[0-9]+$ ]] && [ "$TRIGGER_PCT" -ge 1 ] && [ "$TRIGGER_PCT" -le 95 ] || bad "--trigger $TRIGGER_PCT: want 1 to 95"
case $CLIENT in auto | fuse | nbd) ;; *) bad "--client $CLIENT: want fuse, nbd or auto" ;; esac
ROUNDS=$((${#TARGET_LIST[@]} * ${#SET_LIST[@]} * ROUNDS_PER_SET))

# Preflight.
[ "$(id -u)" -eq 0 ] || fail "must run as root (network namespaces, mounts, loop devices): sudo bash $0"
# A fresh machine gets the packages the demo uses (only the missing ones).
# VM nodes also need qemu, busybox for their initramfs and DRBD's tools.
vm_packages=()
[ "$NODES" = process ] || vm_packages=(qemu-system-x86 busybox-static drbd-utils)
bash "$REPO/scripts/deps.sh" "${vm_packages[@]}" || fail "could not install the demo's packages (scripts/deps.sh)"
export PATH=$PATH:/usr/local/go/bin
for cmd in ip nft nsenter unshare mount umount losetup mkfs.ext4 sha512sum sysctl mountpoint awk ps; do
	command -v "$cmd" >/dev/null || fail "$cmd is missing (sudo bash scripts/deps.sh installs what the demo needs)"
done
if [ "$CLIENT" = auto ]; then
	CLIENT=fuse
	if modprobe -q nbd 2>/dev/null && [ -e /dev/nbd0 ]; then CLIENT=nbd; fi
fi
if [ "$CLIENT" = fuse ]; then
	for cmd in nbdfuse fusermount3; do
		command -v "$cmd" >/dev/null || fail "$cmd is missing (apt-get install libnbd-bin fuse3)"
	done
	[ -e /dev/fuse ] || fail "no /dev/fuse: the kernel needs FUSE for the nbdfuse client"
	losetup -f >/dev/null 2>&1 || fail "no free loop device"
else
	modprobe -q nbd 2>/dev/null && [ -e /dev/nbd0 ] || fail "--client nbd: the nbd module does not load"
fi
# Always through make: Go's build cache makes it quick when nothing
# changed, and a stale binary would show an old build's behaviour.
say "building $BIN/ (make build)"
make build BIN="$BIN"
BIN=$(cd "$BIN" && pwd)
case $OUT in /*) OUT_DIR=$OUT ;; *) OUT_DIR=$REPO/$OUT ;; esac

# Names and state; cleanup undoes whatever of it exists.
ID=$(printf '%04x' $((RANDOM % 65536)))
WORK=
START=$SECONDS
# shellcheck source=scripts/demo/segment.sh
source scripts/demo/segment.sh
# shellcheck source=scripts/demo/hosts.sh
source scripts/demo/hosts.sh
# shellcheck source=scripts/demo/round.sh
source scripts/demo/round.sh
# shellcheck source=scripts/demo/vm.sh
source scripts/demo/vm.sh
CLIENT_KIND=$CLIENT
[ "$NODES" = process ] || vm_preflight
if [ "$NODES" = process ] && [[ " ${TARGET_LIST[*]} " == *" vblade"* ]]; then
	command -v vblade >/dev/null || fail "vblade is missing (apt-get install vblade)"
fi

cleanup() {
	local status=$?
	trap - EXIT
	# A second Ctrl-C must not cut the clean-up short.
	trap '' INT TERM
	set +eu
	stop_copy 2>/dev/null
	stop_sampler
	stop_client
	# VM nodes die at once: there is nothing left to stop cleanly.
	[ "$NODES" = process ] || vm_pair_down
	stop_node b TERM
	stop_node a TERM
	remove_segment
	local busy=
	if [ -n "$FS_NS_PID" ]; then
		fs_ns mountpoint -q "$MNT" && busy=1
		fs_ns mountpoint -q "$FUSE_DIR" && busy=1
		stop_fs_ns
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		# Keep the logs of a failed run.
		if [ "$status" -ne 0 ] && [ -d "$WORK/rounds" ]; then
			mkdir -p "$OUT_DIR" && rm -rf "$OUT_DIR/rounds" && cp -r "$WORK/rounds" "$OUT_DIR/rounds" &&
				printf 'demo: the logs are in %s/rounds\n' "$OUT" >&2
		fi
		if [ -n "$busy" ] || mountpoint -q "$MNT" || mountpoint -q "$FUSE_DIR"; then
			warn "something was still mounted under $WORK: leaving it in place"
		elif [ -n "$KEEP" ]; then
			printf 'demo: kept the work directory %s\n' "$WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	if [ "$status" -ne 0 ]; then
		printf 'demo: cleaned up after failure (exit %d)\n' "$status" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The work directory is on disk: -s and FLUSH mean something there.
WORK=$(mktemp -d /var/tmp/ironblade-demo.XXXX)
STORE=$WORK/store.img
CTL_DIR=$WORK/ctl
NBD_SOCK=$WORK/nbd.sock
FUSE_DIR=$WORK/fuse
MNT=$WORK/mnt
mkdir -p "$CTL_DIR" "$FUSE_DIR" "$MNT" "$WORK/sets" "$WORK/rounds"
start_fs_ns

say "work directory $WORK; building the segment (namespaces ibdemo-$ID-*)"
build_segment
note "switch: bridge br0 in $NS_SWITCH, MTU $MTU; client $NS_CLIENT"
if [ "$NODES" = vm ]; then
	VLAN_KIND="VLAN $VLAN: kernel VLAN interfaces in the guests, ${VLAN_KIND#"VLAN $VLAN, "} on the client"
	[ "$VLAN" -ne 0 ] || VLAN_KIND=untagged
	say "preparing the VM nodes (guest kernel, initramfs with the targets$([ "$STORAGE" = drbd ] && echo " and DRBD"))"
	vm_prepare
	note "guests: $VM_KERNEL_TEXT; disks cache=none; storage $STORAGE"
	if [ "$VM_ACCEL" = tcg ] && [ -z "$QUICK" ]; then
		QUICK=1
		note "no working KVM here: the guests' CPUs are emulated (TCG), so a tenth of each set is copied (--full insists on the whole)"
	fi
else
	note "nodes: namespaces $NS_A and $NS_B, one shared sparse store $STORE"
	if [ "${#VLAN_ARGS[@]}" -gt 0 ] && [[ " ${TARGET_LIST[*]} " == *" vblade"* ]]; then
		fail "vblade cannot tag VLAN $VLAN frames itself and this kernel has no 8021q module: use --vlan 0 with vblade on process nodes"
	fi
fi
[ "$QUICK" != full ] || QUICK=
scale_sets

# The store of a configuration holds every round's files (all kept, each
# round in its own directory) plus a quarter for the file system; it is
# sparse. Each configuration starts on a blank one.
total_mib=0
for s in "${SET_LIST[@]}"; do total_mib=$((total_mib + SET_FILES[$s] * SET_MIB[$s])); done
store_mib=$(((total_mib * ROUNDS_PER_SET * 5 / 4 + 256 + 1023) / 1024 * 1024))
note "AoE on $IFACE: $VLAN_KIND"
note "mode: $MODE; client: $CLIENT_KIND; scorn timeout $SCORN_TIMEOUT; fence delay $FENCE_DELAY"

say "generating the file sets from /dev/urandom, with SHA-512 sums"
for s in "${SET_LIST[@]}"; do
	mkdir -p "$WORK/sets/$s"
	for ((i = 1; i <= SET_FILES[$s]; i++)); do
		head -c "$((SET_MIB[$s] << 20))" /dev/urandom >"$WORK/sets/$s/$(printf 'file-%04d.bin' "$i")"
	done
	(cd "$WORK/sets/$s" && sha512sum -- *) >"$WORK/sets/$s.sha512"
	note "$s: ${SET_FILES[$s]} x ${SET_MIB[$s]} MiB"
done

idx=0
for t in "${TARGET_LIST[@]}"; do
	use_target "$t"
	say "configuration $t: $TARGET_KIND ${TARGET_ARGS[*]} on both nodes, a blank ${store_mib} MiB store"
	FS_MADE=
	if [ "$NODES" = vm ]; then
		vm_pair_down
		vm_new_disks "$store_mib"
		vm_pair_ready "$WORK/vm-qemu.log"
	else
		rm -f "$STORE"
		truncate -s "${store_mib}M" "$STORE"
	fi
	for s in "${SET_LIST[@]}"; do
		for e in "${EVENT_LIST[@]}"; do
			n=$REPEAT
			[ "$e" != none ] || n=1
			for ((r = 1; r <= n; r++)); do
				idx=$((idx + 1))
				run_round "$idx" "$s" "$e" "$([ "$n" -gt 1 ] && echo "$r" || echo 1)"
			done
		done
	done
done
[ "$NODES" = process ] || vm_pair_down

say "report"
if [ "$MODE" = standby ]; then
	mode_text="**standby** (B serves all along; the initiator keeps A active)"
	b_text="is told to announce itself (SIGUSR1) after the event"
	[ -n "$ANNOUNCE" ] || b_text="is left alone: the initiator notices by itself"
else
	mode_text="**cold** (B starts only after the event)"
	b_text="announces itself at start"
fi
chain_text="ironaoe serve -> nbdfuse -> loop device"
[ "$CLIENT_KIND" = fuse ] || chain_text="ironaoe attach -> /dev/nbdN"
if [ "$NODES" = vm ]; then
	nodes_text="Nodes A and B: qemu guests ($VM_KERNEL_TEXT), each with its own kernel and page cache; "
	if [ "$STORAGE" = drbd ]; then
		nodes_text+="each its own disk (sparse file, cache=none) replicated by DRBD 8.4, protocol C, dual-primary, over a link of its own."
	else
		nodes_text+="both attach one shared disk image (cache=none)."
	fi
	fence_text="A's switch ports cut and its qemu killed (SIGKILL: page cache, DRBD state and target die together)"
else
	nodes_text="Nodes A and B: processes in network namespaces of this host sharing one sparse store and one page cache (standing in for dual-primary DRBD; --nodes vm shows real machines)."
	fence_text="A's switch port down and SIGKILL of its target"
fi
cat >"$WORK/preamble.md" <<EOF
$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r); \`scripts/demo.sh ${DEMO_ARGV:-}\`.

- Segment: a Linux bridge in its own network namespace, MTU $MTU; AoE on $VLAN_KIND.
- $nodes_text
- Targets compared: ${TARGET_LIST[*]} (\`-s\`: acknowledged only once durable), shelf 1 slot 0 on both nodes.
- Mode: $mode_text; B $b_text.
- none: the copy with no fault (the baseline copy time). migrate: SIGTERM to A's target (it finishes its requests and exits), then B. fence: $fence_text, then B after $FENCE_DELAY.
- Client: $chain_text -> ext4; scorn timeout $SCORN_TIMEOUT. Each set is copied with cp, then synced; A fails over once ${TRIGGER_PCT}% of it reached the device.
EOF
plot_status=0
"$BIN/ironbench" plot --out "$WORK/report" --title "ironblade failover demo" --preamble "$WORK/preamble.md" \
	"$WORK"/rounds/* || plot_status=$?
runtime=$((SECONDS - START))
printf '\nRun time: %d min %02d s.\n' $((runtime / 60)) $((runtime % 60)) >>"$WORK/report/report.md"

mkdir -p "$OUT_DIR"
rm -rf "$OUT_DIR/rounds"
cp "$WORK/report/"* "$OUT_DIR/"
cp -r "$WORK/rounds" "$OUT_DIR/rounds"
say "done in $((runtime / 60)) min $((runtime % 60)) s: $OUT/report.md, $OUT/timeline.png, $OUT/timeline.svg"
[ "$plot_status" -eq 0 ] || fail "some files were corrupt or missing after a failover, or the report failed (see above)"
