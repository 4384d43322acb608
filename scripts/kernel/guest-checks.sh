# The checks run inside the kernel-test guest (busybox ash), sourced by
# guest-init.sh. See docs/kernel-tests.md for what each check proves.
#
# The host side (run.sh) serves requests over the 9p share: the guest
# writes /share/ctl/NNNN.req ("start NAME KIND ...", "mtu 9000", ...) and
# waits for NNNN.ok or NNNN.err. Results go to /share/results:
#   checks.tsv      check <TAB> PASS|FAIL|SKIP <TAB> detail
#   throughput.tsv  target <TAB> mtu <TAB> sync <TAB> write MB/s <TAB> read MB/s
#   steps/*.log     the output of every bounded step
#   hang-*.txt      the aoe driver's state when a step hung
#   aoe-err.log     /dev/etherd/err (retransmits and other driver messages)
#   dmesg.txt       the kernel log at the end
#
# busybox ash runs its own applets before $PATH, so the GNU tools copied
# from the host (dd for its throughput line, sha512sum, mkfs.ext4) are
# called by absolute path.

R=/share/results
DD=/usr/bin/dd
SHA512SUM=/usr/bin/sha512sum
MKFS=/usr/sbin/mkfs.ext4
IRONAOE=/usr/bin/ironaoe
MIB=1048576

. /share/config.sh

log() {
	echo "[$(cut -d' ' -f1 /proc/uptime)] $*"
}

# result CHECK STATUS DETAIL records one line of the summary.
result() {
	printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$R/checks.tsv"
	log "RESULT $1: $2 $3"
}

# host CMD ARGS... asks run.sh on the host to do something and prints its
# answer; it fails if the host reports an error or does not answer.
rpc_seq=0
host() {
	rpc_seq=$((rpc_seq + 1))
	local req i=0
	req=/share/ctl/$(printf %04d "$rpc_seq")
	printf '%s\n' "$*" >"$req.tmp"
	mv "$req.tmp" "$req.req"
	while [ ! -e "$req.ok" ] && [ ! -e "$req.err" ]; do
		i=$((i + 1))
		if [ "$i" -ge 1200 ]; then
			log "host $*: no answer within 120 s"
			return 1
		fi
		sleep 0.1
	done
	if [ -e "$req.ok" ]; then
		cat "$req.ok"
		return 0
	fi
	log "host $*: $(cat "$req.err")"
	return 1
}

# spawn LABEL CMD... starts CMD in the background, its output in
# steps/LABEL.log; await LABEL SECS waits for it.
spawn() {
	local label=$1
	shift
	rm -f "/tmp/rc.$label"
	# Nothing of the caller's is left open in the background: a step stuck
	# in the kernel must not hold the console pipe.
	("$@" >"$R/steps/$label.log" 2>&1; echo $? >"/tmp/rc.$label") </dev/null >/dev/null 2>&1 &
}

# await LABEL SECS returns the exit status of a spawned step, or 124 if it
# is still running after SECS seconds: then the step hung, and the aoe
# driver's state is saved as a finding (a process stuck in uninterruptible
# sleep cannot be killed, so it is left behind).
await() {
	local label=$1 secs=$2 i=0
	while [ ! -s "/tmp/rc.$label" ]; do
		i=$((i + 1))
		if [ "$i" -ge $((secs * 10)) ]; then
			log "HANG: step $label still running after $secs s; saving the driver state"
			dump_state "$label"
			return 124
		fi
		sleep 0.1
	done
	return "$(cat "/tmp/rc.$label")"
}

# bounded SECS LABEL CMD... runs CMD with the watchdog.
bounded() {
	local secs=$1 label=$2
	shift 2
	spawn "$label" "$@"
	await "$label" "$secs"
}

# judge CHECK LABEL WHAT STATUS records CHECK as failed if the step LABEL
# ended with a non-zero STATUS (124: it hung), saying WHAT it was doing;
# it returns non-zero then. A hang of the device RETRY_DEV (set by
# aoe_case) in the aoe driver's own way (see driver_lost_request) is left
# for aoe_case to retry: it sets DRIVER_HANG and records nothing.
judge() {
	case $4 in
	0) return 0 ;;
	124)
		if [ -n "${RETRY_DEV:-}" ] && driver_lost_request "$RETRY_DEV"; then
			DRIVER_HANG=$2
			log "$1: the aoe driver holds a request on $RETRY_DEV with no frame outstanding to the target (its known hang, docs/kernel-tests.md)"
			return 1
		fi
		result "$1" FAIL "HANG $3: driver state in hang-$2.txt"
		;;
	*) result "$1" FAIL "$3: $(tail -n 2 "$R/steps/$2.log" | tr '\n' ' ')" ;;
	esac
	return 1
}

# driver_lost_request DEV is true when the aoe driver has a request in
# flight on DEV (inflight) but no frame outstanding to its target (nout 0
# in debugfs): it is not waiting for the target, which has answered
# everything, and it will never finish the request (docs/kernel-tests.md,
# "the aoe driver hangs").
driver_lost_request() {
	local inflight nout
	inflight=$(awk '{ print $1 + $2 }' "/sys/block/etherd!$1/inflight" 2>/dev/null)
	nout=$(awk -F: '/^[0-9a-f]+:[0-9]+:[0-9]+:[0-9]+$/ { print $2; exit }' "/sys/kernel/debug/aoe/$1" 2>/dev/null)
	[ "${inflight:-0}" -gt 0 ] && [ "$nout" = 0 ]
}

# step CHECK NAME WHAT CMD... runs CMD as the bounded step CHECK-NAME and
# judges it.
step() {
	local check=$1 label=$1-$2 what=$3
	shift 3
	bounded "$STEP_SECS" "$label" "$@"
	judge "$check" "$label" "$what" $?
}

# running LABEL is true while a spawned step has not finished.
running() {
	[ ! -s "/tmp/rc.$1" ]
}

# dump_state LABEL writes what is known about a hang to hang-LABEL.txt:
# the aoe devices' sysfs and debugfs state, the blocked tasks and dmesg.
dump_state() {
	local f="$R/hang-$1.txt" d a p
	{
		echo "hang in step $1 at uptime $(cut -d' ' -f1 /proc/uptime) s"
		for d in /sys/block/etherd*; do
			[ -d "$d" ] || continue
			echo "== $d"
			for a in state mac netif payload firmware-version size inflight stat; do
				printf '%s: %s\n' "$a" "$(cat "$d/$a" 2>&1)"
			done
		done
		for d in /sys/kernel/debug/aoe/*; do
			[ -f "$d" ] || continue
			echo "== debugfs $d"
			cat "$d"
		done
		echo "== aoe parameters"
		grep . /sys/module/aoe/parameters/* 2>&1
		echo "== tasks in uninterruptible sleep"
		for p in /proc/[0-9]*; do
			if grep -q '^State:.*D' "$p/status" 2>/dev/null; then
				echo "-- pid ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
				cat "$p/stack" 2>/dev/null
			fi
		done
		echo "== sysrq w (blocked tasks), then dmesg"
		echo w >/proc/sysrq-trigger
		sleep 1
		dmesg
	} >"$f" 2>&1
}

# dd_rate LOG prints the MB/s of the transfer GNU dd reported in LOG.
dd_rate() {
	awk '/ copied, / { n = split($0, p, ", "); s = p[n - 1]; sub(/ s$/, "", s);
		if (s > 0) printf "%.1f", $1 / s / 1000000 }' "$1"
}

# retransmits counts the retransmit messages the aoe driver has reported.
retransmits() {
	grep -c retransmit "$R/aoe-err.log" 2>/dev/null || true
}

# set_mtu N sets the MTU on the host's links and then on eth0.
set_mtu() {
	host mtu "$1" >/dev/null && ip link set eth0 mtu "$1"
}

# aoe_wait DEV SECS waits until the aoe driver has device DEV (e1.0) up,
# asking for discovery every two seconds.
aoe_wait() {
	local dev=$1 secs=$2 i=0
	while :; do
		if [ -b "/dev/etherd/$dev" ] && grep -q '^up' "/sys/block/etherd!$dev/state" 2>/dev/null; then
			return 0
		fi
		[ $((i % 20)) -eq 0 ] && echo discover >/dev/etherd/discover
		i=$((i + 1))
		[ "$i" -ge $((secs * 10)) ] && return 1
		sleep 0.1
	done
}

# aoe_device CHECK DEV MTU checks that the kernel found DEV with the size
# of the host's file and the payload that MTU allows.
aoe_device() {
	local check=$1 dev=$2 mtu=$3 size payload want
	if ! aoe_wait "$dev" 20; then
		result "$check" FAIL "discovery: /dev/etherd/$dev did not appear within 20 s"
		return 1
	fi
	size=$(cat "/sys/block/etherd!$dev/size")
	if [ "$size" -ne $((DISK_MIB * 2048)) ]; then
		result "$check" FAIL "size: /dev/etherd/$dev has $size sectors, the file $((DISK_MIB * 2048))"
		return 1
	fi
	payload=$(cat "/sys/block/etherd!$dev/payload")
	want=$(((mtu - 36) / 512 * 512))
	if [ "$payload" -ne "$want" ]; then
		result "$check" FAIL "payload: $payload bytes per frame at MTU $mtu, want $want"
		return 1
	fi
	log "$dev: $size sectors, $payload-byte payload, via $(cat "/sys/block/etherd!$dev/netif")"
}

# roundtrip CHECK DEV NAME writes DATA_MIB of random data to
# /dev/etherd/DEV with O_DIRECT, reads it back and compares SHA-512s with
# the data and with the host's file NAME. It sets WRITE_MBS and READ_MBS.
roundtrip() {
	local check=$1 dev=$2 name=$3 got hosthash rt0
	WRITE_MBS=- READ_MBS=-
	rt0=$(retransmits)
	step "$check" write "writing /dev/etherd/$dev" \
		$DD if=/tmp/data.bin of="/dev/etherd/$dev" bs=1M count="$DATA_MIB" oflag=direct || return 1
	WRITE_MBS=$(dd_rate "$R/steps/$check-write.log")
	rm -f /tmp/back.bin
	step "$check" read "reading /dev/etherd/$dev" \
		$DD if="/dev/etherd/$dev" of=/tmp/back.bin bs=1M count="$DATA_MIB" iflag=direct || return 1
	READ_MBS=$(dd_rate "$R/steps/$check-read.log")
	got=$($SHA512SUM </tmp/back.bin | cut -d' ' -f1)
	rm -f /tmp/back.bin
	if [ "$got" != "$DATA_SHA512" ]; then
		result "$check" FAIL "data read back differs from data written (SHA-512 $got)"
		return 1
	fi
	if ! hosthash=$(host sha512 "$name" "$DATA_MIB"); then
		result "$check" FAIL "cannot hash the host's file"
		return 1
	fi
	if [ "$hosthash" != "$DATA_SHA512" ]; then
		result "$check" FAIL "the host's file differs from the data written (SHA-512 $hosthash)"
		return 1
	fi
	RT=$(($(retransmits) - rt0))
	log "$check: write $WRITE_MBS MB/s, read $READ_MBS MB/s, $RT retransmits, SHA-512 matches"
}

# aoe_case CHECK KIND MTU SYNC SHELF SLOT: one target (ironblade or vblade)
# at one MTU, with or without -s: discovery, size, data round trip. The
# throughput goes to throughput.tsv. If the aoe driver hangs in its known
# way (a request held with no frame outstanding), the case runs once more
# on a new target and device (slot SLOT+10, target CHECK-retry), and the
# result says so; CASE_NAME and CASE_DEV name the target and device the
# result is about.
aoe_case() {
	local check=$1 kind=$2 mtu=$3 sync=$4 shelf=$5 slot=$6 opts="" ok=0 note=""
	[ "$sync" = yes ] && opts=-s
	CASE_NAME=$check CASE_DEV=e$shelf.$slot
	if ! host start "$check" "$kind" "$DISK_MIB" "$shelf" "$slot" $opts >/dev/null; then
		result "$check" FAIL "cannot start $kind"
		return 1
	fi
	DRIVER_HANG=
	RETRY_DEV=$CASE_DEV
	aoe_device "$check" "$CASE_DEV" "$mtu" && roundtrip "$check" "$CASE_DEV" "$check" && ok=1
	RETRY_DEV=
	if [ "$ok" = 0 ] && [ -n "$DRIVER_HANG" ]; then
		note=" (after the aoe driver's known hang on $CASE_DEV in step $DRIVER_HANG: a request held with no frame outstanding, hang-$DRIVER_HANG.txt; run again on e$shelf.$((slot + 10)))"
		CASE_NAME=$check-retry CASE_DEV=e$shelf.$((slot + 10))
		if ! host start "$CASE_NAME" "$kind" "$DISK_MIB" "$shelf" "$((slot + 10))" $opts >/dev/null; then
			result "$check" FAIL "cannot start $kind again after the driver hang on e$shelf.$slot"
			return 1
		fi
		aoe_device "$check" "$CASE_DEV" "$mtu" && roundtrip "$check" "$CASE_DEV" "$CASE_NAME" && ok=1
	fi
	if [ "$ok" = 1 ]; then
		result "$check" PASS "$CASE_DEV $DISK_MIB MiB, $DATA_MIB MiB O_DIRECT write+read, SHA-512 equal (guest and host file); write $WRITE_MBS MB/s, read $READ_MBS MB/s, $RT retransmits$note"
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$mtu" "$sync" "${WRITE_MBS:--}" "${READ_MBS:--}" >>"$R/throughput.tsv"
	[ "$ok" = 1 ]
}

# restart_case CHECK NAME DEV: reads DEV back while the host kills the
# target NAME (SIGKILL) and starts it again; the read must carry on and
# return the data written earlier. If the aoe driver hangs in its known
# way (driver_lost_request), the check runs once more on a new target
# (CHECK-retry, e1.20) that the data are written to first, and the result
# says so.
restart_case() {
	local check=$1 name=$2 dev=$3
	DRIVER_HANG=
	RETRY_DEV=$dev
	restart_once "$check" "$name" "$dev" ""
	local status=$?
	RETRY_DEV=
	[ "$status" = 0 ] || [ -z "$DRIVER_HANG" ] && return "$status"
	local note=" (after the aoe driver's known hang on $dev in step $DRIVER_HANG: a request held with no frame outstanding, hang-$DRIVER_HANG.txt; run again on e1.20)"
	if ! host start "$check-retry" ironblade "$DISK_MIB" 1 20 >/dev/null; then
		result "$check" FAIL "cannot start ironblade again after the driver hang on $dev"
		return 1
	fi
	aoe_device "$check" e1.20 "$(cat /sys/class/net/eth0/mtu)" &&
		step "$check" rewrite "writing /dev/etherd/e1.20" \
			$DD if=/tmp/data.bin of=/dev/etherd/e1.20 bs=1M count="$DATA_MIB" oflag=direct &&
		restart_once "$check" "$check-retry" e1.20 "$note"
	status=$?
	host stop "$check-retry" >/dev/null
	return "$status"
}

# restart_once CHECK NAME DEV NOTE is one try of restart_case; NOTE ends
# its result.
restart_once() {
	local check=$1 name=$2 dev=$3 note=$4 delay rt0 got
	rt0=$(retransmits)
	rm -f /tmp/back.bin
	spawn "$check-read" $DD if="/dev/etherd/$dev" of=/tmp/back.bin bs=1M count="$DATA_MIB" iflag=direct
	# A quarter of the way into the read, going by the earlier read.
	delay=$(awk -v r="${READ_MBS:-10}" -v m="$DATA_MIB" 'BEGIN { d = m * 1.048576 / r / 4; if (d < 0.5 || r == "-") d = 0.5; printf "%.1f", d }')
	sleep "$delay"
	if ! running "$check-read"; then
		result "$check" FAIL "the read finished within $delay s, before the restart: nothing tested"
		return 1
	fi
	if ! host restart "$name" 2 >/dev/null; then
		result "$check" FAIL "the host could not restart $name"
		return 1
	fi
	log "$check: $name killed and started again $delay s into the read"
	await "$check-read" "$STEP_SECS"
	judge "$check" "$check-read" "reading /dev/etherd/$dev across the restart" $? || return 1
	got=$($SHA512SUM </tmp/back.bin | cut -d' ' -f1)
	rm -f /tmp/back.bin
	if [ "$got" != "$DATA_SHA512" ]; then
		result "$check" FAIL "data read across the restart differs (SHA-512 $got)"
		return 1
	fi
	result "$check" PASS "target killed and restarted (2 s down) $delay s into a $DATA_MIB MiB O_DIRECT read; read completed at $(dd_rate "$R/steps/$check-read.log") MB/s, SHA-512 equal, $(($(retransmits) - rt0)) retransmits$note"
}

# check_ironaoe: the userspace initiator in the guest, through the
# kernel's nbd driver: ext4 on /dev/nbd0, a file set copied in, verified,
# verified again after a remount, fsck on the host. Whatever happens, the
# device is detached and the target stopped afterwards.
check_ironaoe() {
	local c=ironaoe-nbd
	if ironaoe_steps $c; then
		result $c PASS "attach e3.0 -> /dev/nbd0 ($FS_MIB MiB), mkfs.ext4, $(wc -l </share/fileset.sha512) files copied, sha512sum -c before and after a remount, detach, host e2fsck clean"
	fi
	if running $c-attach; then
		umount /mnt 2>/dev/null
		bounded 30 $c-cleanup $IRONAOE detach /dev/nbd0
	fi
	host stop $c >/dev/null
}

ironaoe_steps() {
	local c=$1 i
	if ! kmod_load nbd nbds_max=4; then
		result $c FAIL "cannot load nbd.ko"
		return 1
	fi
	if ! host start $c ironblade "$FS_MIB" 3 0 >/dev/null; then
		result $c FAIL "cannot start ironblade"
		return 1
	fi
	spawn $c-attach $IRONAOE attach -i eth0 e3.0 /dev/nbd0
	i=0
	until grep -q '^/dev/nbd0$' "$R/steps/$c-attach.log" 2>/dev/null; do
		i=$((i + 1))
		if ! running $c-attach || [ "$i" -ge 600 ]; then
			result $c FAIL "ironaoe attach: $(tail -n 3 "$R/steps/$c-attach.log" | tr '\n' ' ')"
			return 1
		fi
		sleep 0.1
	done
	log "$c: attached after $((i / 10)) s: /dev/nbd0 has $(cat /sys/block/nbd0/size) sectors"
	if [ "$(cat /sys/block/nbd0/size)" -ne $((FS_MIB * 2048)) ]; then
		result $c FAIL "/dev/nbd0 has $(cat /sys/block/nbd0/size) sectors, the file $((FS_MIB * 2048))"
		return 1
	fi
	step $c mkfs mkfs.ext4 $MKFS -F -L ironaoe /dev/nbd0 || return 1
	step $c mount "mounting /dev/nbd0" mount -t ext4 /dev/nbd0 /mnt || return 1
	step $c copy "copying the file set" sh -c "cp -a /share/fileset /mnt/ && sync" &&
		step $c verify "sha512sum -c after the copy" sh -c "cd /mnt && $SHA512SUM --quiet -c /share/fileset.sha512" &&
		# Again from the device, not the page cache.
		step $c umount "unmounting" umount /mnt &&
		echo 3 >/proc/sys/vm/drop_caches &&
		step $c remount "mounting again" mount -t ext4 -o ro /dev/nbd0 /mnt &&
		step $c reverify "sha512sum -c after a remount" sh -c "cd /mnt && $SHA512SUM --quiet -c /share/fileset.sha512" ||
		return 1
	step $c final-umount "unmounting" umount /mnt || return 1
	step $c detach "ironaoe detach" $IRONAOE detach /dev/nbd0 || return 1
	await $c-attach 60
	judge $c $c-attach "waiting for ironaoe attach to exit after the detach" $? || return 1
	if ! host fsck $c >"$R/steps/$c-fsck.log"; then
		result $c FAIL "e2fsck -fn on the host's file found problems: steps/$c-fsck.log"
		return 1
	fi
}

# check_vlan: a guest 802.1Q interface against ironblade --vlan, with both
# eth0 and the VLAN interface in aoe_iflist: the device must be found
# through the VLAN interface only.
check_vlan() {
	local c=aoe-vlan vif="eth0.$VLAN_ID" netif
	if [ "$HAVE_VLAN" != 1 ]; then
		result $c SKIP "waiting for --vlan (issue 5): bin/ironblade --help does not list it"
		return 0
	fi
	if ! kmod_load 8021q || ! ip link add link eth0 name "$vif" type vlan id "$VLAN_ID" || ! ip link set "$vif" up; then
		result $c FAIL "cannot create $vif"
		return 1
	fi
	echo "eth0 $vif" >/sys/module/aoe/parameters/aoe_iflist
	if ! host start $c ironblade "$DISK_MIB" 4 0 --vlan "$VLAN_ID" >/dev/null; then
		result $c FAIL "cannot start ironblade --vlan $VLAN_ID"
		return 1
	fi
	if aoe_device $c e4.0 1500; then
		netif=$(cat "/sys/block/etherd!e4.0/netif")
		if [ "$netif" != "$vif" ]; then
			result $c FAIL "e4.0 reached through '$netif', want only $vif"
		elif roundtrip $c e4.0 $c; then
			result $c PASS "e4.0 found through $vif only (aoe_iflist '$(cat /sys/module/aoe/parameters/aoe_iflist)'), $DATA_MIB MiB O_DIRECT write+read, SHA-512 equal; write $WRITE_MBS MB/s, read $READ_MBS MB/s"
			printf '%s\t%s\t%s\t%s\t%s\n' "ironblade-vlan$VLAN_ID" 1500 no "$WRITE_MBS" "$READ_MBS" >>"$R/throughput.tsv"
		fi
	fi
	host stop $c >/dev/null
	echo eth0 >/sys/module/aoe/parameters/aoe_iflist
}

# check_watchdog is the harness's self-test (not run by default): the
# target goes away under a read, which then blocks until aoe_deadsecs; the
# watchdog must notice within 10 s and save the driver's state.
# check_keyed: the kernel's aoe driver against an export with a key
# (ironblade --auth-key): it may see the device answer Query Config, but
# gets nothing it can use (IDENTIFY is refused, so no block device), and
# the target neither exits nor changes a byte of its file.
check_keyed() {
	local c=aoe-keyed dev=e5.0 zeros got i
	if [ "$HAVE_AUTH" != yes ]; then
		result $c SKIP "bin/ironblade --help does not list --auth-key"
		return 0
	fi
	if ! host start $c ironblade "$DISK_MIB" 5 0 --auth-key "$AUTH_KEY" >/dev/null; then
		result $c FAIL "cannot start ironblade --auth-key"
		return 1
	fi
	for i in 1 2 3 4; do
		echo discover >/dev/etherd/discover
		sleep 2
	done
	if [ -b "/dev/etherd/$dev" ]; then
		# Not expected: try to write through it anyway, so that the file
		# check below judges what it let through.
		bounded 30 "$c-write" $DD if=/tmp/data.bin of="/dev/etherd/$dev" bs=1M count=4 oflag=direct
	fi
	zeros=$(head -c $((DATA_MIB << 20)) /dev/zero | $SHA512SUM | cut -d' ' -f1)
	if ! got=$(host sha512 $c "$DATA_MIB"); then
		result $c FAIL "cannot hash the host's file"
	elif [ "$got" != "$zeros" ]; then
		result $c FAIL "the keyed export's file changed (SHA-512 $got)"
	elif [ -b "/dev/etherd/$dev" ] && grep -q '^up' "/sys/block/etherd!$dev/state" 2>/dev/null; then
		result $c FAIL "the aoe driver brought $dev up against a keyed export"
	elif ! host alive $c >/dev/null; then
		result $c FAIL "ironblade exited while the aoe driver talked to it"
	else
		host stop $c >/dev/null
		result $c PASS "e5.0 with --auth-key: aoe.ko got no usable device (IDENTIFY refused), host file unchanged (all zeros), ironblade still running"
		return 0
	fi
	host stop $c >/dev/null
	return 1
}

check_watchdog() {
	local c=watchdog-selftest
	host start $c ironblade "$DISK_MIB" 5 0 >/dev/null && aoe_wait e5.0 20 && host stop $c >/dev/null || {
		result $c FAIL "cannot set up e5.0"
		return 1
	}
	bounded 10 $c-read $DD if=/dev/etherd/e5.0 of=/dev/null bs=1M count=1 iflag=direct
	if [ $? = 124 ] && grep -q '^rttavg' "$R/hang-$c-read.txt"; then
		result $c PASS "the watchdog caught a read stuck for 10 s and saved the driver state (hang-$c-read.txt)"
	else
		result $c FAIL "the watchdog did not catch the stuck read"
	fi
}

main_checks() {
	local mtu sync n
	mkdir -p "$R/steps"
	log "guest up: kernel $(uname -r), $(nproc) CPU, $(awk '/MemTotal/ { print $2 / 1024 " MiB" }' /proc/meminfo)"
	ip link set eth0 up
	cp /share/data/data.bin /tmp/data.bin
	DATA_SHA512=$(cat /share/data/data.sha512)

	# 2. ironaoe first, before aoe.ko is loaded, so that the kernel's
	# initiator does not also claim (and scan) its device.
	case " $CHECKS " in *" ironaoe "*) check_ironaoe ;; esac

	case " $CHECKS " in *" aoe "* | *" vlan "* | *" throughput "* | *" watchdog "*) ;; *) return 0 ;; esac
	if ! kmod_load aoe aoe_iflist=eth0 aoe_deadsecs="$AOE_DEADSECS"; then
		result aoe-load FAIL "cannot load aoe.ko"
		return 1
	fi
	cat /dev/etherd/err </dev/null >"$R/aoe-err.log" 2>&1 &

	# 1 and 4: the kernel initiator against ironblade and, for comparison,
	# vblade; each MTU, with and without -s; a restart during a read.
	n=0
	for mtu in $MTUS; do
		set_mtu "$mtu" || result "mtu-$mtu" FAIL "cannot set MTU $mtu"
		for sync in no yes; do
			case " $CHECKS " in *" aoe "*)
				aoe_case "aoe-ironblade-mtu$mtu-sync-$sync" ironblade "$mtu" "$sync" 1 "$n"
				if [ "$n" = 0 ] && [ "$READ_MBS" != - ]; then
					restart_case aoe-ironblade-restart "$CASE_NAME" "$CASE_DEV"
				elif [ "$n" = 0 ]; then
					result aoe-ironblade-restart FAIL "not run: it reads back the data of aoe-ironblade-mtu$mtu-sync-$sync, which failed"
				fi
				host stop "aoe-ironblade-mtu$mtu-sync-$sync" >/dev/null
				[ "$CASE_NAME" = "aoe-ironblade-mtu$mtu-sync-$sync" ] || host stop "$CASE_NAME" >/dev/null
				;;
			esac
			case " $CHECKS " in *" throughput "*)
				# Reference only: run.sh does not count these.
				aoe_case "ref-vblade-mtu$mtu-sync-$sync" vblade "$mtu" "$sync" 2 "$n" || true
				host stop "ref-vblade-mtu$mtu-sync-$sync" >/dev/null
				[ "$CASE_NAME" = "ref-vblade-mtu$mtu-sync-$sync" ] || host stop "$CASE_NAME" >/dev/null
				;;
			esac
			n=$((n + 1))
		done
		if [ "$mtu" = 1500 ]; then
			case " $CHECKS " in *" vlan "*) check_vlan ;; esac
		fi
	done
	set_mtu 1500
	case " $CHECKS " in *" aoe "*) check_keyed ;; esac
	case " $CHECKS " in *" watchdog "*) check_watchdog ;; esac
	dmesg >"$R/dmesg.txt"
	log "checks done"
}
