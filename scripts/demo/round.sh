# shellcheck shell=bash
# One round of the failover demo: copy a file set onto the client's file
# system, migrate or fence node A in the middle of it, sync, then check
# every file twice: after a remount over the same initiator, and through a
# fresh initiator process. Sourced by scripts/demo.sh.

# Pids of the round's background jobs ("" when not running).
SAMPLER_PID=
COPY_PID=
# FS_MADE is set once the file system exists on the store.
FS_MADE=

# progress prints the sampler's latest "BYTES_WRITTEN ACTIVE_MAC TARGETS".
progress() { cat "$WORK/progress" 2>/dev/null || echo "0 - 0"; }

# targets_seen N succeeds once the initiator knows N targets of e1.0.
targets_seen() {
	local written active n
	read -r written active n <<<"$(progress)"
	[ "${n:-0}" -ge "$1" ]
}

# active_is MAC succeeds while the target carrying I/O is MAC.
active_is() {
	local written active n
	read -r written active n <<<"$(progress)"
	[ "$active" = "$1" ]
}

# start_sampler OUT samples the device every 100 ms into OUT (JSON lines)
# and keeps $WORK/progress up to date.
start_sampler() {
	rm -f "$WORK/progress"
	"$BIN/ironbench" timeline --control-dir "$CTL_DIR" --device e1.0 --interval 100ms \
		--out "$1" --progress "$WORK/progress" 2>>"$WORK/sampler.log" &
	SAMPLER_PID=$!
	wait_until 30 "the first timeline sample" test -s "$WORK/progress"
}

stop_sampler() {
	stop_pid "$SAMPLER_PID" TERM 5
	SAMPLER_PID=
}

# stop_copy ends a copy still running (at clean-up): its cp and sync first.
stop_copy() {
	[ -n "$COPY_PID" ] || return 0
	local child
	for child in $(ps -o pid= --ppid "$COPY_PID" 2>/dev/null); do
		kill -KILL "$child" 2>/dev/null || true
	done
	stop_pid "$COPY_PID" KILL 5
	COPY_PID=
}

# fail_over EVENT RDIR stops or fences node A, then brings node B in, and
# records the times in RDIR. What it says is printed at the end, so that
# printing does not delay B on a busy machine.
fail_over() {
	local event=$1 rdir=$2 t0 t1='' gone said
	case $event in
	migrate)
		# The cluster manager's stop on A: SIGTERM, ironblade finishes the
		# requests in flight, syncs and exits; then its start on B.
		t0=$(now)
		stop_node a TERM
		gone=$(now)
		said="SIGTERM to node A: it exited after $(elapsed_ms "$t0" "$gone") ms"
		;;
	fence)
		# Fencing: A's switch port goes down and A dies at once, with
		# whatever it had in flight. The manager acts on B once A is dead
		# (SIGKILL waits for I/O in progress) and FENCE_DELAY has passed.
		t0=$(now)
		cut_link a
		# (bash would report the kill of its child on stderr.)
		stop_node a KILL 2>/dev/null
		gone=$(now)
		sleep "$(awk -v t0="$t0" -v g="$gone" -v d="$FENCE_DELAY_S" 'BEGIN { r = t0 + d - g; printf "%.3f", (r > 0 ? r : 0) }')"
		said="node A's link cut and A killed (SIGKILL): dead after $(elapsed_ms "$t0" "$gone") ms"
		;;
	esac
	if [ "$MODE" = cold ]; then
		t1=$(now)
		start_node b "$rdir/node-b.log"
		said+="; node B started (it announces itself) $(elapsed_ms "$t0" "$t1") ms after the event"
	elif [ -n "$ANNOUNCE" ] && [ "$TARGET_KIND" = ironblade ]; then
		t1=$(now)
		announce b
		said+="; node B told to announce itself (SIGUSR1) $(elapsed_ms "$t0" "$t1") ms after the event"
	elif [ -n "$ANNOUNCE" ]; then
		said+="; vblade on node B cannot be told to announce itself: the initiator finds out by itself (scorn timeout $SCORN_TIMEOUT)"
	else
		said+="; node B left alone: the initiator finds out by itself (scorn timeout $SCORN_TIMEOUT)"
	fi
	note "$said"
	printf 'event_time=%s\nnode_a_gone_time=%s\npromote_time=%s\n' "$t0" "$gone" "$t1" >>"$rdir/round.env"
}

# trigger_event EVENT RDIR THRESHOLD waits until THRESHOLD bytes were
# written to the device, then migrates or fences node A.
trigger_event() {
	local event=$1 rdir=$2 threshold=$3 written active n
	local deadline=$((SECONDS + 1800))
	while :; do
		read -r written active n <<<"$(progress)"
		[ "${written:-0}" -ge "$threshold" ] && break
		if grep -qs '^sync_end=' "$rdir/copy.end"; then
			warn "the copy and sync ended before ${TRIGGER_PCT}% of the set reached the device: failing over now, with no I/O to stall"
			break
		fi
		[ "$SECONDS" -lt "$deadline" ] || fail "the copy made no progress for 30 min"
		sleep 0.02
	done
	if [ "$active" = "$MAC_A" ]; then
		note "$(human_mib $((written - BASE_WRITTEN))) of $(human_mib "$ROUND_BYTES") written through node A: ${event} now"
	else
		warn "the initiator had already moved to $active before the event (node A scorned: a scorn timeout too short for this machine's load?)"
	fi
	fail_over "$event" "$rdir"
}

# run_round INDEX SET EVENT [REPEAT] copies SET with EVENT (none, migrate or
# fence) in the middle; REPEAT numbers the repetitions of one event.
run_round() {
	local idx=$1 set=$2 event=$3 repeat=${4:-1}
	local name files mib bytes rdir
	name=$(printf '%02d-%s-%s-%s' "$idx" "$TARGET" "$set" "$event")
	[ "$repeat" -le 1 ] || name+="-$repeat"
	files=${SET_FILES[$set]}
	mib=${SET_MIB[$set]}
	bytes=$((files * mib << 20))
	rdir=$WORK/rounds/$name
	mkdir -p "$rdir"
	if [ "$event" = none ]; then
		say "round $idx/$ROUNDS, $TARGET: copy $files x $mib MiB ($(human_mib $bytes)), no fault"
	else
		say "round $idx/$ROUNDS, $TARGET: copy $files x $mib MiB ($(human_mib $bytes)) and $event node A in the middle"
	fi

	cat >"$rdir/round.env" <<-EOF
		name=$name
		set=$set
		files=$files
		bytes=$bytes
		event=$event
		repeat=$repeat
		target=$TARGET
		nodes=$NODES
		storage=$STORAGE
		mode=$MODE
		sync=$([ ${#TARGET_ARGS[@]} -gt 0 ] && echo true || echo false)
		announce=$([ "$MODE" = cold ] || { [ -n "$ANNOUNCE" ] && [ "$TARGET_KIND" = ironblade ]; } && echo true || echo false)
		scorn_timeout=$SCORN_TIMEOUT
		fence_delay=$FENCE_DELAY
		vlan=$VLAN_KIND
		node_a_mac=$MAC_A
		node_b_mac=$MAC_B
	EOF

	# Node A serves; the initiator finds it; then, in standby mode, node B
	# joins as the standby (the failover policy keeps A active).
	start_node a "$rdir/node-a.log"
	start_client "$rdir/client.log"
	if [ -z "$FS_MADE" ]; then
		note "mkfs.ext4 on the device ($(client_block_device))"
		# Eager initialisation, so that no background zeroing competes
		# with the copies. On VM nodes, few inodes (a file per MiB) and a
		# 32 MiB journal keep that short: a synchronous target writes
		# them frame by frame on an emulated CPU.
		local small=()
		[ "$NODES" != vm ] || small=(-i 1048576 -J size=32)
		mkfs.ext4 -q -F "${small[@]}" -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$(client_block_device)"
		FS_MADE=1
	fi
	mount_fs
	start_sampler "$rdir/timeline.jsonl"
	wait_until 30 "the initiator to use node A" active_is "$MAC_A"
	if [ "$MODE" = standby ]; then
		start_node b "$rdir/node-b.log"
		wait_until 30 "the initiator to see node B" targets_seen 2
		active_is "$MAC_A" || fail "the initiator switched to node B before the event"
		note "node A active, node B standby (both serve e1.0 from the shared store)"
	fi

	# The copy, then a sync: in the background, each end time noted.
	local base written active n threshold
	read -r base active n <<<"$(progress)"
	threshold=$((base + bytes * TRIGGER_PCT / 100))
	BASE_WRITTEN=$base
	ROUND_BYTES=$bytes
	local dst=$MNT/$name
	fs_ns mkdir -p "$dst"
	echo "copy_start=$(now)" >>"$rdir/round.env"
	(
		status=0
		fs_ns cp -r "$WORK/sets/$set/." "$dst/" || status=$?
		echo "copy_end=$(now)" >"$rdir/copy.end"
		fs_ns sync -f "$dst" || status=$?
		echo "sync_end=$(now)" >>"$rdir/copy.end"
		exit "$status"
	) &
	COPY_PID=$!

	# The event, once TRIGGER_PCT % of the set's bytes reached the device.
	[ "$event" = none ] || trigger_event "$event" "$rdir" "$threshold"

	local copy_status=0
	wait "$COPY_PID" || copy_status=$?
	COPY_PID=
	cat "$rdir/copy.end" >>"$rdir/round.env"
	sleep 0.3 # a last sample or two after the sync
	stop_sampler
	read -r written active n <<<"$(progress)"
	[ "$copy_status" -eq 0 ] || warn "cp or sync failed (status $copy_status): see $rdir/client.log"
	note "copy and sync done; the initiator now uses $active"

	# With no fault, the files are read from the node that took them: a
	# VM node's standby would read a disk that A's page cache (a target
	# without -s) has not written back yet.
	if [ "$event" = none ] && [ "$NODES" = vm ]; then
		stop_node b TERM
	fi

	# Check 1 (--remount-check): remount over the same initiator, page
	# cache dropped.
	umount_fs
	if [ -n "$REMOUNT_CHECK" ]; then
		drop_caches
		mount_fs ro
		local r_ok r_bad
		read -r r_ok r_bad <<<"$(check_sums "$dst" "$WORK/sets/$set.sha512" "$rdir/check-remount.txt")"
		umount_fs
		note "after a remount: $r_ok intact, $r_bad corrupt"
		printf 'remount_intact=%s\nremount_corrupt=%s\n' "$r_ok" "$r_bad" >>"$rdir/round.env"
	fi
	stop_client

	# Check 2: a fresh initiator process and a fresh nbdfuse: nothing that
	# saw the writes is left between the checker and node B's store.
	start_client "$rdir/client-check.log" ro
	drop_caches
	mount_fs ro
	local f_ok f_bad
	read -r f_ok f_bad <<<"$(check_sums "$dst" "$WORK/sets/$set.sha512" "$rdir/check-fresh.txt")"
	umount_fs
	stop_client
	note "through a fresh connection: $f_ok intact, $f_bad corrupt"
	printf 'intact=%s\ncorrupt=%s\n' "$f_ok" "$f_bad" >>"$rdir/round.env"

	# Back to the start for the next round: B stops, A's link returns.
	stop_node b TERM
	stop_node a TERM
	[ "$event" = fence ] && restore_link a
	return 0
}
