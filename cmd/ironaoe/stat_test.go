package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator"
)

// cannedTime is the "now" of the formatting tests.
var cannedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// cannedStats is a device with two targets, one scorned.
func cannedStats() initiator.Stats {
	return initiator.Stats{Config: initiator.ConfigStats{
		ScornTimeout: time.Second, RTOMin: 10 * time.Millisecond, RTOMax: time.Second, DiscoverInterval: time.Minute,
		DeadTimeout: 3 * time.Minute, MaxWindow: 64, Policy: initiator.PolicyFailover,
	}, Devices: []initiator.DeviceStats{{
		Name: "e1.0", Shelf: 1, Slot: 0, State: initiator.DeviceUp, Since: cannedTime.Add(-90 * time.Second),
		Failovers: 1, LastStall: 1234 * time.Millisecond,
		Size: 64 << 20, Model: "ironblade", Serial: "1.0:host", Firmware: "v1.0", LBA48: true,
		Policy: initiator.PolicyFailover, Active: []string{"02:00:00:00:00:01"},
		Reads: 10, Writes: 20, Flushes: 3, BytesRead: 5 << 20, BytesWritten: 1536, IOErrors: 1, Stale: 2,
		Targets: []initiator.TargetStats{
			{
				MAC: "02:00:00:00:00:01", Interface: "eth0", State: initiator.TargetActive, Since: cannedTime.Add(-time.Minute),
				BufferCount: 64, Firmware: 0x0100, Window: 64, Cwnd: 32, SectorsPerFrame: 17, Outstanding: 5,
				RTT: 123456 * time.Nanosecond, RTTDev: 4321 * time.Nanosecond, RTO: 10 * time.Millisecond,
				Frames: 1000, Retransmits: 7, Errors: 0, LastHeard: cannedTime.Add(-time.Second),
			},
			{
				MAC: "02:00:00:00:00:02", Interface: "eth1", State: initiator.TargetScorned, Since: cannedTime.Add(-5 * time.Second),
				BufferCount: 16, Window: 16, Cwnd: 1, SectorsPerFrame: 2, RTO: 1500 * time.Millisecond,
				Frames: 40, Retransmits: 12, Errors: 3, Scorns: 1,
			},
		},
		Events: []initiator.Event{
			{Time: cannedTime.Add(-5 * time.Second), Kind: initiator.EventScorned, Target: "02:00:00:00:00:02", Detail: "frame unanswered for 1s"},
			{Time: cannedTime.Add(-5 * time.Second), Kind: initiator.EventSwitched, Target: "02:00:00:00:00:01", Previous: "02:00:00:00:00:02"},
			{Time: cannedTime.Add(-4 * time.Second), Kind: initiator.EventResumed, Target: "02:00:00:00:00:01", Stall: 1234 * time.Millisecond},
		},
	}}}
}

func cannedProcess() processStatus {
	return processStatus{
		PID: 4242, Command: "serve", Version: "v1.2.3", Started: cannedTime.Add(-2 * time.Hour),
		Interfaces: []string{"eth0", "eth1"}, Listeners: []string{"unix:/run/nbd.sock", "tcp:127.0.0.1:10809"},
		Exports: []string{"e1.0"}, Stats: cannedStats(),
	}
}

func TestFormatStatus(t *testing.T) {
	var out bytes.Buffer
	attached := cannedProcess()
	attached.PID, attached.Command, attached.Listeners, attached.Attached = 77, "attach", nil, "/dev/nbd0"
	attached.Stats = initiator.Stats{}
	if err := formatStatus(&out, []processStatus{cannedProcess(), attached}, cannedTime); err != nil {
		t.Fatal(err)
	}
	want := `ironaoe serve (pid 4242, version v1.2.3, up 2h0m0s) on eth0, eth1
  NBD: unix:/run/nbd.sock tcp:127.0.0.1:10809
  tunables: scorn timeout 1s, RTO 10ms-1s, rediscover every 1m0s, dead timeout 3m0s, window 64, policy failover
  e1.0: up for 1m30s, 64 MiB, failover, using 02:00:00:00:00:01
    reads 10 (5 MiB), writes 20 (1.5 KiB), flushes 3, I/O errors 1, queued 0
    failovers 1, last stall 1.23s, late writes 0
    ignored answers: stale 2, duplicate 0, wrong source 0; fenced writes 0
    TARGET             INTERFACE  STATE    SINCE  RTT    RTTDEV  RTO   OUTSTANDING  FRAMES  RETRANSMITS  ERRORS  SCORNS  LAST HEARD
    02:00:00:00:00:01  eth0       active   1m0s   123µs  4µs     10ms  5/32         1000    7            0       0       1s ago
    02:00:00:00:00:02  eth1       scorned  5s     -      -       1.5s  0/1          40      12           3       1       never
    recent events:
      2026-01-02 03:04:00 scorned 02:00:00:00:00:02: frame unanswered for 1s
      2026-01-02 03:04:00 switched 02:00:00:00:00:01 (was 02:00:00:00:00:02)
      2026-01-02 03:04:01 resumed 02:00:00:00:00:01 after a 1.23s stall

ironaoe attach (pid 77, version v1.2.3, up 2h0m0s) on eth0, eth1
  attached as /dev/nbd0
  no device found yet
`
	if got := out.String(); got != want {
		t.Errorf("formatStatus:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatDiscovery(t *testing.T) {
	st := cannedStats()
	st.Devices[0].Targets[1].ConfigString = "rack 3"
	st.Devices = append(st.Devices, initiator.DeviceStats{Name: "e2.5", Shelf: 2, Slot: 5,
		Targets: []initiator.TargetStats{{MAC: "02:00:00:00:00:03", Interface: "eth0", BufferCount: 16, SectorsPerFrame: 2, Firmware: 0x4019}}})
	var out bytes.Buffer
	if err := formatDiscovery(&out, discoveryFrom(st, []string{"eth0"})); err != nil {
		t.Fatal(err)
	}
	want := `DEVICE  TARGET             INTERFACE  BUFFERS  SECTORS/FRAME  FIRMWARE  CAPACITY  CONFIG
e1.0    02:00:00:00:00:01  eth0       64       17             0x0100    64 MiB    -
e1.0    02:00:00:00:00:02  eth1       16       2              0x0000    64 MiB    "rack 3"
e2.5    02:00:00:00:00:03  eth0       16       2              0x4019    unknown   -
`
	if got := out.String(); got != want {
		t.Errorf("formatDiscovery:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 512: "512 B", 1024: "1 KiB", 1536: "1.5 KiB (1536 B)", 64 << 20: "64 MiB",
		3 << 30: "3 GiB", 1<<40 + 1: "1 TiB (1099511627777 B)", 1 << 62: "4 EiB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestStatsJSON checks that the stats a control socket sends decode back
// to what was sent, states included.
func TestStatsJSON(t *testing.T) {
	st := cannedStats()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back initiator.Stats
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(st, back) {
		t.Errorf("round trip changed the stats:\n%+v\n%+v", st, back)
	}
}

// TestControlSocket runs a control server and asks it with stat, in
// text and JSON; a stale socket in the directory is removed.
func TestControlSocket(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "ctl")
	log := slog.New(slog.DiscardHandler)
	ctl, err := startControl(dir, cannedProcess, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("control dir: %v, %v; want mode 0700", fi.Mode(), err)
	}

	// A dead process's socket: bound, then closed without unlinking.
	stale := filepath.Join(dir, "999999"+controlSuffix)
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	var out bytes.Buffer
	env := &environment{Stdout: &out, Logger: log}
	if err := stat(context.Background(), statOptions{JSON: true, ControlDir: dir}, env); err != nil {
		t.Fatal(err)
	}
	var report statReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("stat --json: %v\n%s", err, out.String())
	}
	if len(report.Processes) != 1 {
		t.Fatalf("stat found %d processes, want 1:\n%s", len(report.Processes), out.String())
	}
	p := report.Processes[0]
	if p.PID != 4242 || p.Socket != ctl.path || p.Stats.Devices[0].Targets[0].MAC != "02:00:00:00:00:01" {
		t.Errorf("stat --json: %+v", p)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale socket not removed: %v", err)
	}

	out.Reset()
	if err := stat(context.Background(), statOptions{Control: ctl.path}, env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ironaoe serve (pid 4242") || !strings.Contains(out.String(), "02:00:00:00:00:02") {
		t.Errorf("stat:\n%s", out.String())
	}

	ctl.Close()
	if _, err := os.Stat(ctl.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	if err := stat(context.Background(), statOptions{Control: ctl.path}, env); err == nil {
		t.Error("stat --control of a closed socket succeeded")
	}
}

// shortTempDir returns a temporary directory with a path short enough for
// a Unix socket inside it (at most 107 bytes), which t.TempDir's may not be.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ironaoe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
