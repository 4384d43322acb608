#!/usr/bin/env bash
# Quick start: export a disk image over ATA over Ethernet with ironblade and
# use it from another host -- here, two network namespaces joined by a veth
# pair, so nothing leaves this machine.
#
#   sudo bash scripts/quickstart.sh
#
# It builds bin/ (make build), creates the namespaces and a sparse image,
# runs `bin/ironblade 1 0 <if> <image>` on one side and `bin/ironbench
# verify` (discover, identify, write random data, read it back, compare) on
# the other, stops ironblade with SIGTERM and prints a summary. Everything it
# creates is removed on exit, failure or Ctrl-C. It exits non-zero if any
# step fails.
#
# Environment: IMAGE_MIB (image size, default 64), VERIFY_MIB (data written
# and read back, default 8), QD (requests in flight, default 16).
set -euo pipefail

cd "$(dirname "$0")/.."

IMAGE_MIB=${IMAGE_MIB:-64}
VERIFY_MIB=${VERIFY_MIB:-8}
QD=${QD:-16}

say() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nquickstart: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it creates network namespaces): sudo bash $0"
command -v ip >/dev/null || fail "the ip command (iproute2) is missing"
command -v make >/dev/null || fail "make is missing"
[ "$VERIFY_MIB" -le "$IMAGE_MIB" ] || fail "VERIFY_MIB=$VERIFY_MIB is larger than IMAGE_MIB=$IMAGE_MIB"

# Names unique to this run, so two runs (or a test suite) do not collide.
id=$(printf '%04x%04x' $RANDOM $RANDOM)
ns_target=ibqs-target-$id
ns_client=ibqs-client-$id
if_target=ibqs${id}t
if_client=ibqs${id}c
work=
target_pid=

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$target_pid" ] && kill -0 "$target_pid" 2>/dev/null; then
		kill -TERM "$target_pid" 2>/dev/null || true
		wait "$target_pid" 2>/dev/null || true
	fi
	for ns in "$ns_target" "$ns_client"; do
		if ip netns list | grep -qw "$ns"; then
			# Anything still running in it, then the namespace and its veth end.
			ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
			ip netns del "$ns" || true
		fi
	done
	[ -n "$work" ] && rm -rf "$work"
	if [ "$status" -ne 0 ]; then
		printf 'quickstart: cleaned up after failure (exit %d)\n' "$status" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building bin/ (make build)"
make build

say "creating namespaces $ns_target and $ns_client, joined by veth $if_target <-> $if_client"
ip netns add "$ns_target"
ip netns add "$ns_client"
ip link add "$if_target" netns "$ns_target" type veth peer name "$if_client" netns "$ns_client"
for pair in "$ns_target $if_target" "$ns_client $if_client"; do
	set -- $pair
	ip -n "$1" link set lo up
	ip -n "$1" link set "$2" up
done
# A veth end drops what is sent on it until its carrier is seen up.
for pair in "$ns_target $if_target" "$ns_client $if_client"; do
	set -- $pair
	for _ in $(seq 100); do
		ip -n "$1" -o link show "$2" | grep -q 'state UP' && break
		sleep 0.05
	done
	ip -n "$1" -o link show "$2" | grep -q 'state UP' || fail "$2 did not come up"
done

# The image goes on disk (/var/tmp), where -s and FLUSH mean something.
work=$(mktemp -d /var/tmp/ironblade-quickstart.XXXXXX)
image=$work/disk.img
say "creating a ${IMAGE_MIB} MiB sparse image $image"
truncate -s "${IMAGE_MIB}M" "$image"

say "starting: ip netns exec $ns_target bin/ironblade 1 0 $if_target $image"
# ip netns exec replaces itself with ironblade, so $! is ironblade's pid.
ip netns exec "$ns_target" bin/ironblade 1 0 "$if_target" "$image" >"$work/ironblade.log" 2>&1 &
target_pid=$!
sleep 0.2
kill -0 "$target_pid" 2>/dev/null || { cat "$work/ironblade.log" >&2; target_pid=; fail "ironblade exited at once"; }

say "checking it from $ns_client: bin/ironbench verify --interface $if_client --size ${VERIFY_MIB}MiB --qd $QD"
if ! ip netns exec "$ns_client" bin/ironbench verify --interface "$if_client" --size "${VERIFY_MIB}MiB" --qd "$QD"; then
	printf '\nironblade said:\n' >&2
	cat "$work/ironblade.log" >&2
	fail "ironbench verify failed"
fi

say "stopping ironblade with SIGTERM"
kill -TERM "$target_pid"
status=0
wait "$target_pid" || status=$?
target_pid=
if [ "$status" -ne 0 ]; then
	cat "$work/ironblade.log" >&2
	fail "ironblade exited with status $status after SIGTERM"
fi
allocated=$(du -k "$image" | cut -f1)
[ "$allocated" -ge $((VERIFY_MIB * 1024)) ] || fail "the image holds only ${allocated} KiB after writing ${VERIFY_MIB} MiB"

say "ironblade's log"
sed 's/^/    /' "$work/ironblade.log"

cat <<EOF

quick start OK:
  - ironblade exported $image (${IMAGE_MIB} MiB) as AoE device e1.0 on $if_target in $ns_target;
  - ironbench, in $ns_client, discovered and identified it, wrote ${VERIFY_MIB} MiB of random data,
    read it back and found it identical;
  - ironblade exited cleanly on SIGTERM; the image now holds $((allocated / 1024)) MiB of data.
  Everything this script created is being removed.
EOF
