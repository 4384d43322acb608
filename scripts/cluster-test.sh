#!/usr/bin/env bash
# The crash-consistency proof on nodes that really die (make test-cluster):
# two qemu guests, each with its own kernel, page cache and disk, replicated
# by DRBD (protocol C); the target runs on node A; the host writes a known
# pattern through the initiator (ironbench crash write: every acknowledged
# write is journaled, with one FLUSH half way), and the moment the last
# write is acknowledged, node A is fenced (its ports cut, its qemu killed).
# The target is then started on node B and every journaled block is read
# back through a fresh initiator (ironbench crash check):
#
#   ironblade -s   every acknowledged write must be there (--expect durable)
#   ironblade      every write acknowledged before the FLUSH must be there,
#                  and some acknowledged after it must be lost: the negative
#                  control that proves the check can fail (--expect flushed)
#   vblade -s      reference: every acknowledged write should be there
#   vblade         reference: its FLUSH is a no-op, so whatever sat in A's
#                  page cache is lost, flushed or not (reported only)
#
# Only ironblade's rows decide the exit status; vblade's are marked ref-.
# See docs/demo.md (the crash-consistency proof).
#
#   sudo bash scripts/cluster-test.sh        (or: sudo make test-cluster)
#
# Environment: TARGETS (default "ironblade-s ironblade vblade-s vblade"),
# STORAGE (drbd or shared, default drbd), SIZE (data written per target,
# default 32MiB), VLAN (default 42), KEEP=1 keeps the work directory.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/demo/lib.sh
source scripts/demo/lib.sh
fail() {
	printf '\ntest-cluster: FAILED: %s\n' "$*" >&2
	exit 1
}

TARGETS=${TARGETS:-ironblade-s ironblade vblade-s vblade}
STORAGE=${STORAGE:-drbd}
SIZE=${SIZE:-32MiB}
VLAN=${VLAN:-42}
MTU=9000
NODES=vm
SCORN_TIMEOUT=5s
KEEP=${KEEP:-}
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin:$PATH
export LC_ALL=C

[ "$(id -u)" -eq 0 ] || fail "must run as root (network namespaces, taps, qemu): sudo bash $0"
case $STORAGE in drbd | shared) ;; *) fail "STORAGE=$STORAGE: want drbd or shared" ;; esac
for t in $TARGETS; do
	case $t in vblade | vblade-s | ironblade | ironblade-s) ;; *) fail "TARGETS: unknown target $t" ;; esac
done
bash scripts/deps.sh qemu-system-x86 busybox-static drbd-utils >/dev/null || fail "could not install the packages (scripts/deps.sh)"
START=$SECONDS
BIN=$(mktemp -d /tmp/ironblade-cluster-bin.XXXXXX)
make -s build BIN="$BIN" >/dev/null || fail "make build failed"

ID=$(printf '%04x' $((RANDOM % 65536)))
WORK=$(mktemp -d /var/tmp/ironblade-cluster.XXXX)
OUT_DIR=$REPO/out/cluster/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
# shellcheck source=scripts/demo/segment.sh
source scripts/demo/segment.sh
# shellcheck source=scripts/demo/hosts.sh
source scripts/demo/hosts.sh
# shellcheck source=scripts/demo/vm.sh
source scripts/demo/vm.sh

cleanup() {
	local status=$?
	trap - EXIT
	trap '' INT TERM
	set +eu
	vm_pair_down
	remove_segment
	cp -r "$WORK"/vm/share-* "$WORK"/*.log "$OUT_DIR/" 2>/dev/null
	cp "$WORK"/vm/console-*.log "$OUT_DIR/" 2>/dev/null
	if [ -n "$KEEP" ]; then echo "test-cluster: kept $WORK"; else rm -rf "$WORK"; fi
	rm -rf "$BIN"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

vm_preflight
say "segment (namespaces ibdemo-$ID-*), guests' kernel and initramfs"
build_segment
vm_prepare
note "guests: $VM_KERNEL_TEXT; storage $STORAGE; AoE on VLAN $VLAN ($VLAN_KIND on the client)"

client() { in_netns "$NS_CLIENT" "$@"; }
crash_flags=(-i "$IFACE" "${VLAN_ARGS[@]}" --device e1.0)

results=$WORK/results.tsv
: >"$results"
for t in $TARGETS; do
	use_target "$t"
	say "$t: blank disks, both nodes booted$([ "$STORAGE" = drbd ] && echo ", DRBD connected and in sync")"
	vm_pair_down
	vm_new_disks 512
	vm_pair_ready "$WORK/qemu.log"
	start_node a "$WORK/node-a.log"

	journal=$WORK/$t.journal
	say "$t: writing $SIZE through the initiator, one FLUSH half way, then fencing node A at once"
	set +e
	(client "$BIN/ironbench" crash write "${crash_flags[@]}" --scorn-timeout "$SCORN_TIMEOUT" \
		--journal "$journal" --size "$SIZE" --flush-at 50) 2>&1 | tee "$WORK/$t-write.log"
	write_status=${PIPESTATUS[0]}
	set -e
	cut_link a
	vm_kill a
	[ "$write_status" -eq 0 ] || fail "$t: ironbench crash write failed (exit $write_status)"
	note "node A fenced (ports cut, qemu killed)"

	# Node B takes over: DRBD there goes on alone once it sees A gone.
	if [ "$STORAGE" = drbd ]; then
		vm_must b 60 drbd_wait ro:Primary/Unknown
	fi
	start_node b "$WORK/node-b.log"
	case $t in
	*-s) expect=durable ;;
	ironblade) expect=flushed ;;
	vblade) expect=report ;;
	esac
	set +e
	(client "$BIN/ironbench" crash check "${crash_flags[@]}" --journal "$journal" --expect "$expect" \
		--json "$WORK/$t-check.json") 2>&1 | tee "$WORK/$t-check.log"
	check_status=${PIPESTATUS[0]}
	set -e
	name=$t
	[[ $t == vblade* ]] && name=ref-$t
	status=PASS
	detail=$(tail -n 1 "$WORK/$t-check.log")
	if [ "$check_status" -eq 3 ]; then
		status=FAIL
		detail="the negative control did not show (no acknowledged write lost without -s): $detail"
	elif [ "$check_status" -ne 0 ]; then
		status=FAIL
	fi
	printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$expect" "$detail" >>"$results"
	stop_node b TERM
	restore_link a
done
vm_pair_down

{
	echo
	echo "crash-consistency on VM nodes: storage $STORAGE, $SIZE per target, $((SECONDS - START)) s"
	echo
	printf '%-14s %-6s %-8s %s\n' TARGET RESULT EXPECT "CHECK (blocks read back from node B after node A was fenced)"
	awk -F'\t' '{ s = $2; if ($1 ~ /^ref-/ && s == "FAIL") s = "fail*"; printf "%-14s %-6s %-8s %s\n", $1, s, $3, $4 }' "$results"
	grep -q '^ref-' "$results" && echo "(ref-*: vblade, for comparison only; a failure there is marked fail* and does not count)"
	grep -q "^ironblade$(printf '\t')" "$results" ||
		echo "(no ironblade without -s in TARGETS: the negative control, which shows the check can see a loss, did not run)"
	echo
	echo "logs: $OUT_DIR"
} | tee "$OUT_DIR/summary.txt"
failed=$(awk -F'\t' '$2 == "FAIL" && $1 !~ /^ref-/' "$results" | wc -l)
passed=$(awk -F'\t' '$2 == "PASS" && $1 !~ /^ref-/' "$results" | wc -l)
cp "$results" "$OUT_DIR/"
if [ "$failed" -gt 0 ] || [ "$passed" -eq 0 ]; then
	fail "$failed failed, $passed passed"
fi
say "test-cluster: PASS ($passed passed)"
