# shellcheck shell=bash
# Helpers of scripts/demo.sh: messages, clocks, waiting, and stopping the
# processes the demo started. Sourced, not run.

# say prints a step; note prints a detail under it; warn goes to stderr.
say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'demo: warning: %s\n' "$*" >&2; }
fail() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}

# now prints the wall clock as Unix seconds with nanoseconds, the form
# round.env and the initiator's event log share.
now() { date +%s.%N; }

# elapsed_ms START END prints END-START in milliseconds (both from now).
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# wait_until SECONDS WHAT COMMAND... polls COMMAND every 20 ms until it
# succeeds, or fails the demo after SECONDS.
wait_until() {
	local limit=$1 what=$2
	shift 2
	local deadline=$((SECONDS + limit))
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${limit} s waiting for $what"
		sleep 0.02
	done
}

# alive PID succeeds while PID is a running background job of this shell.
# Not kill -0: once bash has reaped a job, its pid may soon belong to some
# other process on a busy machine, which must never be signalled.
alive() {
	local p
	[ -n "${1:-}" ] || return 1
	for p in $(jobs -pr); do
		[ "$p" = "$1" ] && return 0
	done
	return 1
}

# stop_pid PID SIGNAL GRACE stops a background job of this shell: sends
# SIGNAL, waits up to GRACE seconds, then SIGQUIT (a Go program prints its
# goroutines to its log and exits, showing where it hung) and SIGKILL. It
# reaps the job and never fails.
stop_pid() {
	local pid=$1 sig=${2:-TERM} grace=${3:-10}
	[ -n "$pid" ] || return 0
	if alive "$pid"; then
		kill "-$sig" "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + grace))
		while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.05
		done
		if alive "$pid"; then
			warn "pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) still running ${grace} s after SIG$sig:" \
				"sending SIGQUIT, then SIGKILL"
			kill -QUIT "$pid" 2>/dev/null || true
			sleep 2
			! alive "$pid" || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

# retry TRIES DELAY COMMAND... runs COMMAND until it succeeds, at most TRIES
# times, DELAY seconds apart; it returns COMMAND's last status.
retry() {
	local tries=$1 delay=$2 n status=0
	shift 2
	for ((n = 1; n <= tries; n++)); do
		"$@" 2>/dev/null && return 0
		status=$?
		sleep "$delay"
	done
	return "$status"
}

# duration_s D prints a Go-style duration (500ms, 1s, 1.5s, 2m) in seconds.
duration_s() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /^[0-9.]+ms$/) { sub(/ms$/, "", d); printf "%.3f", d / 1000; exit }
		if (d ~ /^[0-9.]+s$/) { sub(/s$/, "", d); printf "%.3f", d; exit }
		if (d ~ /^[0-9.]+m$/) { sub(/m$/, "", d); printf "%.3f", d * 60; exit }
		if (d ~ /^[0-9.]+$/) { printf "%.3f", d; exit }
		exit 1
	}'
}

# human_mib BYTES prints BYTES in MiB.
human_mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
