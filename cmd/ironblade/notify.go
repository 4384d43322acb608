package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ironblade/ironblade/target"
)

// readyPoll is how often serve looks whether the target has sent its first
// announcement, to report readiness: a few milliseconds at start.
const readyPoll = 5 * time.Millisecond

// systemdNotify returns the notify function of serveEnv under systemd
// (Type=notify): it sends state to $NOTIFY_SOCKET, and does nothing when
// that is unset. A failure is logged, not returned: a lost message is no
// reason to stop serving.
func systemdNotify(logger *slog.Logger) func(state string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			logger.Warn("systemd notify failed", "state", state, "err", err)
		}
	}
}

// systemdWatchdog returns the watchdog timeout systemd asks for
// (WATCHDOG_USEC, if WATCHDOG_PID is unset or ours), or 0.
func systemdWatchdog(logger *slog.Logger) time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("systemd watchdog ignored", "err", err)
		return 0
	}
	return d
}

// statser is what the supervisor reads of the target.
type statser interface {
	Stats() target.Stats
}

// supervisor tells the service manager what serve is doing: READY=1 once
// the target has announced itself (the link is open and the server's loop
// runs), STATUS= lines, RELOADING=1 around a SIGHUP reload, STOPPING=1
// when a signal stops it, and WATCHDOG=1 pings while the target is
// healthy (see health).
type supervisor struct {
	notify   func(string)
	watchdog time.Duration
	// status is the STATUS= text while serving; a reload of --config may
	// change it while the watchdog goroutine reads it.
	status atomic.Pointer[string]
	logger *slog.Logger
	// backlog reports the bytes waiting in the receive queues of the
	// process's packet sockets, and waiting the frames waiting in their
	// receive rings (nil for none); see health.
	backlog func() (int, error)
	waiting func() int
	ready   atomic.Bool
}

// newSupervisor returns a supervisor for env, or one that sends nothing if
// env.Notify is nil.
func newSupervisor(env serveEnv, o options) *supervisor {
	notify := env.Notify
	if notify == nil {
		notify = func(string) {}
	}
	backlog := env.PacketBacklog
	if backlog == nil {
		backlog = packetBacklog
	}
	s := &supervisor{notify: notify, watchdog: env.Watchdog, logger: env.Logger, backlog: backlog}
	s.setStatus(statusLine(o))
	return s
}

// setStatus replaces the STATUS= text sent while serving.
func (s *supervisor) setStatus(status string) { s.status.Store(&status) }

// statusText is the STATUS= text while serving.
func (s *supervisor) statusText() string { return *s.status.Load() }

// statusLine is the STATUS= text while serving, as `systemctl status` shows it.
func statusLine(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serving e%d.%d on %s", o.Shelf, o.Slot, o.Netif)
	if o.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d", o.VLAN)
	}
	if o.Sync {
		b.WriteString(", sync on")
	} else {
		b.WriteString(", sync off")
	}
	if o.ReadOnly {
		b.WriteString(", read-only")
	}
	if len(o.AuthKeys) > 0 {
		fmt.Fprintf(&b, ", auth %s", o.AuthMode)
	}
	return b.String()
}

// run reports readiness, then watches srv, until ctx ends (a signal: it
// sends STOPPING=1) or the returned function is called (Serve returned);
// that function returns once its goroutine is gone.
func (s *supervisor) run(ctx context.Context, srv statser) (stop func()) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() {
			if ctx.Err() != nil {
				s.notify("STOPPING=1\nSTATUS=stopping: finishing the requests in flight and syncing")
			}
		}()
		if !s.waitAnnounced(sctx, srv) {
			return
		}
		s.ready.Store(true)
		s.notify("READY=1\nSTATUS=" + s.statusText())
		if s.watchdog > 0 {
			s.watch(sctx, srv)
		}
	})
	return func() { cancel(); wg.Wait() }
}

// waitAnnounced waits until srv has sent its first frame, the announcement
// at start (or failed to: the link is open all the same), and reports
// whether it did before ctx ended.
func (s *supervisor) waitAnnounced(ctx context.Context, srv statser) bool {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for {
		if st := srv.Stats(); st.FramesOut+st.SendErrors > 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// watch pings the watchdog every half timeout while the target is healthy,
// until ctx ends. Once it is not, the pings stop and systemd restarts the
// service when the timeout runs out (WatchdogSec, Restart=on-failure).
func (s *supervisor) watch(ctx context.Context, srv statser) {
	s.notify("WATCHDOG=1")
	t := time.NewTicker(s.watchdog / 2)
	defer t.Stop()
	var h health
	reported := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		backlog, err := s.backlog()
		if err != nil {
			// Without /proc the queue cannot be seen; the counters still can.
			backlog = 0
		}
		if s.waiting != nil {
			backlog += s.waiting()
		}
		if why := h.check(progressOf(srv.Stats()), backlog); why != "" {
			if !reported {
				s.logger.Error("target stalled: no watchdog ping, systemd will restart it", "why", why)
				s.notify("STATUS=stalled: " + why)
				reported = true
			}
			continue
		}
		if reported {
			s.logger.Info("target serving again")
			s.notify("STATUS=" + s.statusText())
			reported = false
		}
		s.notify("WATCHDOG=1")
	}
}

// reload runs do, a SIGHUP reload, between RELOADING=1 and READY=1 once
// the service is ready.
func (s *supervisor) reload(do func()) {
	if !s.ready.Load() {
		do()
		return
	}
	s.notify("RELOADING=1\n" + daemon.SdNotifyMonotonicUsec())
	do()
	s.notify("READY=1\nSTATUS=" + s.statusText())
}

// progress is what the watchdog compares from one check to the next.
type progress struct {
	in      uint64 // frames the receive loop read
	handled uint64 // frames sent or failed to send, and frames dropped
}

// progressOf sums a target's counters into a progress.
func progressOf(st target.Stats) progress {
	p := progress{in: st.FramesIn, handled: st.FramesOut + st.SendErrors}
	for _, n := range st.Dropped {
		p.handled += n
	}
	return p
}

// health tells a live target from a stuck one by its counters, checked
// every half watchdog timeout. A quiet target is healthy; a stuck one
// either leaves frames in its socket's receive queue or ring unread (the
// receive loop is blocked) or reads frames and neither answers nor drops any (the
// workers or the sync are blocked, say on a hung disk). Either must hold
// at two checks in a row, a whole half timeout apart, so that a frame
// arriving just before a check does not count.
type health struct {
	prev    progress
	strikes int
}

// check records cur, and backlog, what waits unread now (bytes in the
// sockets' receive queues plus frames in their receive rings), and returns
// why the target is stuck, or "" while it is healthy.
func (h *health) check(cur progress, backlog int) string {
	var why string
	switch {
	case backlog > 0 && cur.in == h.prev.in:
		why = fmt.Sprintf("frames wait in the socket (backlog %d) and none was read for a watchdog interval", backlog)
	case cur.in > h.prev.in && cur.handled == h.prev.handled:
		why = fmt.Sprintf("%d frames read and none answered for a watchdog interval", cur.in-h.prev.in)
	}
	h.prev = cur
	if why == "" {
		h.strikes = 0
		return ""
	}
	h.strikes++
	if h.strikes < 2 {
		return ""
	}
	return why
}

// packetBacklog returns the bytes queued for reading on this process's
// AF_PACKET sockets: the Rmem column of /proc/self/net/packet, for the
// sockets whose inodes /proc/self/fd holds.
func packetBacklog() (int, error) { return packetBacklogIn("/proc/self/net/packet") }

// packetBacklogIn is packetBacklog with the packet table of table, which
// is that of the network namespace it belongs to.
func packetBacklogIn(table string) (int, error) {
	mine, err := socketInodes("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	f, err := os.Open(table)
	if err != nil {
		return 0, fmt.Errorf("packet backlog: %w", err)
	}
	defer f.Close()
	return parsePacketBacklog(bufio.NewScanner(f), mine)
}

// socketInodes returns the inodes of the sockets among the links in dir.
func socketInodes(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("packet backlog: %w", err)
	}
	inodes := make(map[string]bool)
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return inodes, nil
}

// parsePacketBacklog sums the Rmem of the sockets in mine from the lines
// of /proc/net/packet ("sk RefCnt Type Proto Iface R Rmem User Inode").
func parsePacketBacklog(sc *bufio.Scanner, mine map[string]bool) (int, error) {
	total := 0
	header := true
	for sc.Scan() {
		if header {
			header = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || !mine[fields[8]] {
			continue
		}
		n, err := strconv.Atoi(fields[6])
		if err != nil {
			return 0, fmt.Errorf("packet backlog: Rmem %q: %w", fields[6], err)
		}
		total += n
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("packet backlog: %w", err)
	}
	return total, nil
}
