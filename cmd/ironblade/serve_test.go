package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/clilog"
	"github.com/ironblade/ironblade/internal/testenv"
)

// newDisk makes a zero-filled file of the given number of sectors.
func newDisk(t *testing.T, sectors int64) string {
	t.Helper()
	return aoetest.SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), sectors*aoe.SectorSize)
}

// writeReadBack writes n random bytes at byte offset off of dev with up
// to qd requests in flight, reads them back and fails the test unless they
// match. It returns the data. logs, shown when the write fails, returns
// the target's log.
func writeReadBack(t *testing.T, ctx context.Context, c *aoetest.Client, dev aoetest.Device, off int64, n, qd int, logs func() string) []byte {
	t.Helper()
	data := aoetest.RandomBytes(n)
	if err := c.WriteAt(ctx, dev, data, off, qd); err != nil {
		t.Fatalf("write: %v\nlogs:\n%s", err, logs())
	}
	back := make([]byte, n)
	if err := c.ReadAt(ctx, dev, back, off, qd); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("read back different data")
	}
	return data
}

// TestServeInMemory runs serve, as the command does, on an in-memory
// Ethernet segment: the announcement at start and on SIGUSR1, writes and
// reads with -s, the -o window, metrics over HTTP, and a graceful stop.
func TestServeInMemory(t *testing.T) {
	const offsetSectors = 8
	disk := newDisk(t, 2048+offsetSectors)
	hub := aoetest.NewHub()
	targetMAC := aoe.MAC{0x02, 0, 0, 0, 0, 0x01}
	clientMAC := aoe.MAC{0x02, 0, 0, 0, 0, 0x02}
	client := aoetest.NewClient(hub.Port(clientMAC, 1500), aoetest.ClientOptions{Timeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })

	opts, err := parseArgs([]string{"ironblade", "7", "3", "veth0", disk, "-s", "-b", "8", "-o", "8",
		"--metrics", "127.0.0.1:0", "--log-level", "debug"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	announce := make(chan os.Signal, 1)
	var gotConfig rawlink.Config
	env := serveEnv{
		Logger: clilog.New(&logs, slog.LevelDebug, clilog.FormatText),
		Listen: func(netif string, cfg rawlink.Config) (aoe.Link, error) {
			gotConfig = cfg
			return hub.Port(targetMAC, 1500), nil
		},
		InterfaceMTU: func(string) (int, error) { return 1500, nil },
		Announce:     announce,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, opts, env) }()

	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	f, err := client.Expect(tctx, aoetest.IsAnnouncement(targetMAC))
	if err != nil {
		t.Fatalf("no announcement at start: %v\nlogs:\n%s", err, logs.String())
	}
	if f.Dst != aoe.BroadcastMAC {
		t.Errorf("announcement sent to %v, want broadcast", f.Dst)
	}
	dev, err := client.DeviceFrom(&f)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Shelf != 7 || dev.Slot != 3 || dev.Config.BufferCount != 8 {
		t.Errorf("announced e%d.%d with %d buffers, want e7.3 with 8", dev.Shelf, dev.Slot, dev.Config.BufferCount)
	}
	if want := socketBufferSize(8, 1500); gotConfig.ReadBuffer != want || gotConfig.WriteBuffer != want {
		t.Errorf("socket buffers %+v, want %d each", gotConfig, want)
	}
	if !strings.Contains(logs.String(), "pid ") || !strings.Contains(logs.String(), ": e7.3, 2048 sectors O_RDWR") {
		t.Errorf("no vblade-style start line in logs:\n%s", logs.String())
	}

	data := writeReadBack(t, tctx, client, dev, 4*aoe.SectorSize, 16*aoe.SectorSize, 4, logs.String)

	announce <- syscall.SIGUSR1
	if _, err := client.Expect(tctx, aoetest.IsAnnouncement(targetMAC)); err != nil {
		t.Fatalf("no announcement after SIGUSR1: %v", err)
	}

	var url string
	testenv.WaitFor(t, 5*time.Second, "the metrics URL in the logs", func() bool {
		m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(logs.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ironblade_target_written_bytes_total{shelf="7",slot="3"} 8192`, "ironblade_target_syncs_total", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	start := time.Now()
	cancel()
	testenv.WaitReturn(t, "serve", done, 2*time.Second)
	t.Logf("stopped in %v", time.Since(start))
	if _, err := http.Get(url); err == nil {
		t.Error("metrics still served after stop")
	}

	// The data went to the file after the 8-sector offset.
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	at := (offsetSectors + 4) * aoe.SectorSize
	if !bytes.Equal(raw[at:at+len(data)], data) {
		t.Error("the file does not hold the written data at offset+LBA")
	}
}

// TestRunFailures checks that the command exits 1 with one plain line that
// names what is wrong when it cannot start.
func TestRunFailures(t *testing.T) {
	disk := newDisk(t, 64)
	small := newDisk(t, 4)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"1", "2", "lo", filepath.Join(t.TempDir(), "nope.img")}, "no such file"},
		{"missing interface", []string{"1", "2", "nosuchif0", disk}, `network interface "nosuchif0": route ip+net: no such network interface (list the interfaces with: ip link)`},
		{"offset past the end", []string{"-o", "8", "1", "2", "lo", small}, "open " + small},
		{"length past the end", []string{"-l", "100", "1", "2", "lo", disk}, "open " + disk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"ironblade"}, tt.args...), noEnv, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.want)
			}
			if n := strings.Count(stderr.String(), "\n"); n != 1 || !strings.HasPrefix(stderr.String(), "ironblade: ") {
				t.Errorf("stderr %q: want one plain line starting \"ironblade: \"", stderr.String())
			}
		})
	}
}

func TestReleaseVersion(t *testing.T) {
	for v, want := range map[string]string{
		"v1.2.3": "v1.2.3", "0.1-4-gabcdef": "0.1-4-gabcdef", "devel": "", "95b318d-dirty": "", "v": "", "": "", "1": "",
	} {
		if got := releaseVersion(v); got != want {
			t.Errorf("releaseVersion(%q) = %q, want %q", v, got, want)
		}
	}
}
