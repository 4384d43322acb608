package main

import (
	"bufio"
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/clilog"
	"github.com/ironblade/ironblade/internal/testenv"
	"github.com/ironblade/ironblade/target"
)

// TestBinarySystemdNotify runs ironblade in a network namespace as
// systemd runs a Type=notify service with WatchdogSec: with NOTIFY_SOCKET
// and WATCHDOG_USEC set. READY=1 must come with the status, once the
// target answers (the announcement is out, Query Config is answered at
// once); WATCHDOG=1 pings at half the timeout; SIGHUP reloads between
// RELOADING=1 and READY=1; SIGTERM sends STOPPING=1.
func TestBinarySystemdNotify(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildBinary(t)
	disk := newDisk(t, 2048)
	notify := testenv.NewNotifySocket(t, "")

	nsTarget, nsClient := testenv.NewNetns(t), testenv.NewNetns(t)
	veth := testenv.NewVeth(t, nsTarget, nsClient, 0)
	link := testenv.ListenRawIn(t, nsClient, veth.IfB, rawlink.Config{})
	client := aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 250 * time.Millisecond})
	t.Cleanup(func() { client.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const watchdog = 400 * time.Millisecond
	cmd := nsTarget.Command(ctx, bin, "-s", "1", "2", veth.IfA, disk)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.Path, "WATCHDOG_USEC=400000")
	ib := testenv.StartProcess(t, "ironblade", cmd)

	ready, before := notify.Expect(t, 10*time.Second, "READY=1")
	if len(before) > 0 {
		t.Errorf("messages before READY=1: %q", before)
	}
	// At READY=1 the announcement is out and requests are answered.
	step, stepDone := context.WithTimeout(ctx, time.Second)
	defer stepDone()
	if _, err := client.Expect(step, aoetest.IsAnnouncement(veth.MACA)); err != nil {
		t.Errorf("READY=1 sent, but no announcement: %v", err)
	}
	devs, err := client.Discover(step, 200*time.Millisecond)
	if err != nil || len(devs) != 1 || devs[0].Shelf != 1 || devs[0].Slot != 2 {
		t.Errorf("READY=1 sent, but Query Config found %v, %v; want e1.2", devs, err)
	}
	if got, want := testenv.NotifyStatus(ready), "serving e1.2 on "+veth.IfA+", sync on"; got != want {
		t.Errorf("STATUS=%q, want %q", got, want)
	}

	// Pings at half the timeout. The first may have waited in the socket,
	// and so may the second: the third comes at least one interval after
	// the first is read (less a margin for the sender's timer).
	notify.Expect(t, watchdog, "WATCHDOG=1")
	start := time.Now()
	for range 2 {
		notify.Expect(t, watchdog, "WATCHDOG=1")
	}
	if took, least := time.Since(start), watchdog/2*9/10; took < least {
		t.Errorf("3 watchdog pings in %v after the first, want at least %v (pings %v apart)", took, least, watchdog/2)
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading, _ := notify.Expect(t, 5*time.Second, "RELOADING=1")
	if !strings.Contains(reloading, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	notify.Expect(t, 5*time.Second, "READY=1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopping, _ := notify.Expect(t, 5*time.Second, "STOPPING=1")
	if testenv.NotifyStatus(stopping) == "" {
		t.Errorf("STOPPING=1 without a status: %q", stopping)
	}
	testenv.WaitFor(t, 5*time.Second, "ironblade to exit", func() bool { return !ib.Running() })
	if err := ib.Err(); err != nil {
		t.Errorf("ironblade exited with %v", err)
	}
}

// TestBinaryNoNotifySocket checks that without NOTIFY_SOCKET nothing
// changes: the target serves and stops as before (TestBinaryOverVeth covers
// the rest), with no warning about systemd.
func TestBinaryNoNotifySocket(t *testing.T) {
	testenv.RequireRoot(t)
	bin := buildBinary(t)
	disk := newDisk(t, 64)
	ns := testenv.NewNetns(t)
	veth := testenv.NewVeth(t, ns, ns, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := ns.Command(ctx, bin, "1", "2", veth.IfA, disk)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NOTIFY_SOCKET=") })
	cmd.Env = append(cmd.Env, "WATCHDOG_USEC=100000")
	ib := testenv.StartProcess(t, "ironblade", cmd)
	testenv.WaitFor(t, 10*time.Second, "serving", func() bool { return strings.Contains(ib.Stderr(), "msg=serving") })
	ib.StopClean(t, syscall.SIGTERM, 5*time.Second)
	if strings.Contains(ib.Stderr(), "systemd") {
		t.Errorf("log mentions systemd without NOTIFY_SOCKET:\n%s", ib.Stderr())
	}
}

// fakeStats is a statser whose counters the test sets.
type fakeStats struct {
	mu sync.Mutex
	st target.Stats
}

func (f *fakeStats) Stats() target.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStats) set(fn func(*target.Stats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.st)
}

// recorder collects notify messages.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) notify(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, s)
}

// count returns how many messages have the line line.
func (r *recorder) count(line string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if slices.Contains(strings.Split(m, "\n"), line) {
			n++
		}
	}
	return n
}

// TestSupervisor drives the supervisor with fake counters on a fake clock:
// no READY=1 before the first frame is out; the watchdog pings while the
// target is quiet or busy, stops when frames wait unread or unanswered
// for two checks, and resumes when they move; STOPPING=1 when the context
// ends.
func TestSupervisor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		var backlog atomic.Int64
		const wd = 10 * time.Second
		env := serveEnv{
			Logger: clilog.New(&testenv.SyncBuffer{}, 0, clilog.FormatText), Notify: rec.notify, Watchdog: wd,
			PacketBacklog: func() (int, error) { return int(backlog.Load()), nil },
		}
		o := options{Shelf: 1, Slot: 2, Netif: "eth0", Sync: true}
		sup := newSupervisor(env, o)
		var srv fakeStats
		ctx, cancel := context.WithCancel(context.Background())
		stop := sup.run(ctx, &srv)

		time.Sleep(time.Second) // the subject: nothing sent yet, so not ready
		synctest.Wait()
		if n := rec.count("READY=1"); n != 0 {
			t.Fatalf("READY=1 before the announcement")
		}
		srv.set(func(st *target.Stats) { st.FramesOut = 1 })
		time.Sleep(readyPoll)
		synctest.Wait()
		if rec.count("READY=1") != 1 || rec.count("WATCHDOG=1") != 1 {
			t.Fatalf("after the announcement: %q, want READY=1 and a first WATCHDOG=1", rec.msgs)
		}

		// From here the test acts between the watchdog's checks, which
		// come every wd/2 from READY=1.
		time.Sleep(wd / 4)

		// Quiet: pings go on.
		time.Sleep(2 * wd)
		synctest.Wait()
		if n := rec.count("WATCHDOG=1"); n != 5 {
			t.Errorf("%d pings after two quiet timeouts, want 5", n)
		}

		// Frames wait unread: after two checks, no more pings.
		backlog.Store(2048)
		time.Sleep(2 * wd)
		synctest.Wait()
		if n := rec.count("WATCHDOG=1"); n != 6 {
			t.Errorf("%d pings with frames left unread for two timeouts, want 6 (one strike allowed)", n)
		}
		// They move again: pings resume.
		backlog.Store(0)
		srv.set(func(st *target.Stats) { st.FramesIn += 10; st.FramesOut += 10 })
		time.Sleep(wd / 2)
		synctest.Wait()
		if n := rec.count("WATCHDOG=1"); n != 7 {
			t.Errorf("%d pings once frames move again, want 7", n)
		}

		// Frames read and never answered.
		before := rec.count("WATCHDOG=1")
		for range 4 {
			srv.set(func(st *target.Stats) { st.FramesIn += 3 })
			time.Sleep(wd / 2)
		}
		synctest.Wait()
		if n := rec.count("WATCHDOG=1") - before; n != 1 {
			t.Errorf("%d pings in two timeouts of unanswered frames, want 1 (one strike allowed)", n)
		}

		sup.reload(func() {})
		if rec.count("RELOADING=1") != 1 || rec.count("READY=1") != 2 {
			t.Errorf("reload sent %q", rec.msgs)
		}

		cancel()
		stop()
		if n := rec.count("STOPPING=1"); n != 1 {
			t.Errorf("%d STOPPING=1 after the context ended, want 1", n)
		}
	})
}

// TestHealth checks the watchdog's stall rules one check at a time.
func TestHealth(t *testing.T) {
	steps := []struct {
		cur     progress
		backlog int
		stuck   bool
	}{
		{progress{0, 1}, 0, false},         // quiet
		{progress{5, 6}, 0, false},         // busy
		{progress{8, 6}, 0, false},         // 3 read, none answered: one strike
		{progress{9, 6}, 0, true},          // and again: stuck
		{progress{9, 9}, 0, false},         // answered: healthy
		{progress{9, 9}, 100, false},       // queued, none read: one strike
		{progress{9, 9}, 100, true},        // and again: stuck
		{progress{10, 10}, 100, false},     // read one: healthy
		{progress{10, 10}, 0, false},       // quiet
		{progress{20, 10}, 0, false},       // one strike
		{progress{20, 30}, 0, false},       // answered
		{progress{1000, 1000}, 0, false},   // busy
		{progress{1000, 1000}, 512, false}, // one strike
	}
	var h health
	for i, s := range steps {
		if got := h.check(s.cur, s.backlog) != ""; got != s.stuck {
			t.Errorf("step %d (%+v, backlog %d): stuck %v, want %v", i, s.cur, s.backlog, got, s.stuck)
		}
	}
}

// TestParsePacketBacklog parses /proc/net/packet lines, keeping only the
// process's own sockets.
func TestParsePacketBacklog(t *testing.T) {
	const table = `sk               RefCnt Type Proto  Iface R Rmem   User   Inode
ffff8a0b0a5e0000 3      3    88a2   2     1 4352   0      123456
ffff8a0b0a5e1000 3      3    88a2   2     1 9999   0      777
ffff8a0b0a5e2000 3      3    0003   0     1 100    0      123457
`
	got, err := parsePacketBacklog(bufio.NewScanner(strings.NewReader(table)), map[string]bool{"123456": true, "123457": true})
	if err != nil || got != 4452 {
		t.Errorf("backlog %d, %v; want 4452", got, err)
	}
	_, err = parsePacketBacklog(bufio.NewScanner(strings.NewReader("h\n1 2 3 4 5 6 x 8 9\n")), map[string]bool{"9": true})
	if err == nil {
		t.Error("a bad Rmem parsed")
	}
}

// TestPacketBacklog reads the real table: a packet socket of this process
// with a frame queued shows up; the socket of nobody else's does.
func TestPacketBacklog(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	veth := testenv.NewVeth(t, ns, ns, 0)
	a := testenv.ListenRawIn(t, ns, veth.IfA, rawlink.Config{})
	// A link with a receive ring queues nothing in the socket (Waiting
	// counts its frames); this reads the socket's queue.
	b := testenv.ListenRawIn(t, ns, veth.IfB, rawlink.Config{NoRing: true})
	var n int
	var err error
	ns.Do(func() error {
		n, err = packetBacklog()
		return nil
	})
	if err != nil || n != 0 {
		t.Fatalf("backlog %d, %v before any frame; want 0", n, err)
	}
	frame := make([]byte, 60)
	copy(frame, veth.MACB[:])
	copy(frame[6:], veth.MACA[:])
	frame[12], frame[13] = 0x88, 0xa2
	if err := a.WriteFrame(frame); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the frame queued on b", func() bool {
		ns.Do(func() error {
			n, err = packetBacklogIn("/proc/thread-self/net/packet") // this thread's namespace
			return nil
		})
		return err == nil && n > 0
	})
	b.Close()
	ns.Do(func() error {
		n, err = packetBacklogIn("/proc/thread-self/net/packet")
		return nil
	})
	if err != nil || n != 0 {
		t.Errorf("backlog %d, %v once the socket is closed; want 0", n, err)
	}
}
