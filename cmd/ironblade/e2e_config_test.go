package main

// End-to-end tests of ironblade --config: several exports from one
// process, found and used by ironaoe, reloaded on SIGHUP under I/O, and
// bad files refused.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/initiator/nbd"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// configRig is ironblade --config in one namespace and ironaoe in another,
// at the two ends of a veth pair.
type configRig struct {
	blade, client *netlab.Netns
	veth          *netlab.Veth
	ironblade     string
	ironaoe       string
	dir           string
	conf          string
}

func newConfigRig(t *testing.T) *configRig {
	testenv.RequireRoot(t)
	r := &configRig{ironblade: buildBinary(t), ironaoe: testenv.BuildBinary(t, "./cmd/ironaoe"), dir: t.TempDir()}
	r.blade, r.client = testenv.NewNetns(t), testenv.NewNetns(t)
	r.veth = testenv.NewVeth(t, r.blade, r.client, 0)
	r.conf = filepath.Join(r.dir, "ironblade.conf")
	return r
}

// exportTable is a config table exporting a new 2048-sector file as
// e1.slot on the rig's interface; it returns the table and the file.
func (r *configRig) exportTable(t *testing.T, name string, slot int) (string, string) {
	disk := newDisk(t, 2048)
	return fmt.Sprintf("[export.%s]\nfile = %q\nshelf = 1\nslot = %d\ninterfaces = [%q]\nsync = true\n\n", name, disk, slot, r.veth.IfA), disk
}

func (r *configRig) writeConf(t *testing.T, tables ...string) {
	t.Helper()
	if err := os.WriteFile(r.conf, []byte(strings.Join(tables, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBlade runs ironblade --config and waits for it to serve.
func (r *configRig) startBlade(t *testing.T) *testenv.Process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := testenv.StartProcess(t, "ironblade --config", r.blade.Command(ctx, r.ironblade, "--config", r.conf, "--metrics", "127.0.0.1:9192"))
	testenv.WaitFor(t, 10*time.Second, "ironblade --config to serve", func() bool {
		if !p.Running() {
			t.Fatalf("ironblade --config exited: %v\n%s", p.Err(), p.Output())
		}
		return strings.Contains(p.Stderr(), "serving metrics")
	})
	return p
}

// discovered runs ironaoe discover --json and returns the device names.
func (r *configRig) discovered(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := r.client.Command(ctx, r.ironaoe, "discover", "--json", "--wait", "1s", "-i", r.veth.IfB)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ironaoe discover: %v\n%s", err, stderr.String())
	}
	var d struct {
		Devices []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
		t.Fatalf("discover --json: %v\n%s", err, stdout.String())
	}
	var names []string
	for _, dev := range d.Devices {
		names = append(names, fmt.Sprintf("%s/%d", dev.Name, dev.Size))
	}
	return names
}

// serveNBD runs ironaoe serve and returns its NBD socket.
func (r *configRig) serveNBD(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sock := filepath.Join(r.dir, "nbd.sock")
	args := []string{"serve", "-i", r.veth.IfB, "--control-dir", filepath.Join(r.dir, "ctl"), "--unix", sock}
	p := testenv.StartProcess(t, "ironaoe serve", r.client.Command(ctx, r.ironaoe, args...))
	testenv.WaitFor(t, 10*time.Second, "the NBD socket", func() bool {
		if !p.Running() {
			t.Fatalf("ironaoe serve exited: %v\n%s", p.Err(), p.Output())
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	return sock
}

// dialNBD opens an NBD export of ironaoe serve, waiting for ironaoe to
// have found the device.
func dialNBD(t *testing.T, sock, export string) *nbd.Client {
	t.Helper()
	var c *nbd.Client
	var last error
	testenv.WaitFor(t, 15*time.Second, "NBD export "+export, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, last = nbd.Dial(ctx, "unix", sock, nbd.ClientConfig{Export: export})
		return last == nil
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes random data at off through c, reads it back and
// returns it, or an error.
func roundTrip(ctx context.Context, c *nbd.Client, off int64, n int) ([]byte, error) {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(off>>9) + byte(i*7)
	}
	if err := c.WriteAt(ctx, data, off, false); err != nil {
		return nil, fmt.Errorf("write at %d: %w", off, err)
	}
	if err := c.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	back := make([]byte, n)
	if err := c.ReadAt(ctx, back, off); err != nil {
		return nil, fmt.Errorf("read at %d: %w", off, err)
	}
	if !bytes.Equal(back, data) {
		return nil, fmt.Errorf("read at %d: not what was written", off)
	}
	return data, nil
}

// TestConfigExports serves two exports from one ironblade --config on one
// interface: ironaoe discovers both and writes through each, the files
// hold the data, and the one metrics endpoint reports each target.
func TestConfigExports(t *testing.T) {
	r := newConfigRig(t)
	tableA, diskA := r.exportTable(t, "a", 0)
	tableB, diskB := r.exportTable(t, "b", 1)
	r.writeConf(t, tableA, tableB)
	blade := r.startBlade(t)

	got := strings.Join(r.discovered(t), " ")
	if got != fmt.Sprintf("e1.0/%d e1.1/%d", 2048*aoe.SectorSize, 2048*aoe.SectorSize) {
		t.Fatalf("discover found %q, want e1.0 and e1.1\nironblade:\n%s", got, blade.Stderr())
	}
	sock := r.serveNBD(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, ex := range []struct{ name, disk string }{{"e1.0", diskA}, {"e1.1", diskB}} {
		c := dialNBD(t, sock, ex.name)
		off := int64(64*aoe.SectorSize) * int64(i+1)
		data, err := roundTrip(ctx, c, off, 32*aoe.SectorSize)
		if err != nil {
			t.Fatalf("%s: %v\nironblade:\n%s", ex.name, err, blade.Stderr())
		}
		raw, err := os.ReadFile(ex.disk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw[off:off+int64(len(data))], data) {
			t.Errorf("%s: %s does not hold the data written", ex.name, ex.disk)
		}
	}
	fams, err := testenv.ScrapeMetrics(r.blade, "127.0.0.1:9192")
	if err != nil {
		t.Fatal(err)
	}
	for _, slot := range []string{"0", "1"} {
		if v := testenv.MetricValue(fams, "ironblade_target_written_bytes_total", "shelf", "1", "slot", slot, "netif", r.veth.IfA); v < 32*aoe.SectorSize {
			t.Errorf("e1.%s: ironblade_target_written_bytes_total %v, want at least %d", slot, v, 32*aoe.SectorSize)
		}
	}
	var timed uint64 // requests in the latency histograms, every export and op
	for _, m := range fams["ironblade_target_request_duration_seconds"].GetMetric() {
		timed += m.GetHistogram().GetSampleCount()
	}
	if timed == 0 {
		t.Error("ironblade_target_request_duration_seconds counts no request")
	}
	if v := testenv.MetricValue(fams, "ironblade_build_info", "version", testenv.BinaryVersion); v != 1 {
		t.Errorf("ironblade_build_info{version=%q} = %v, want 1", testenv.BinaryVersion, v)
	}
	blade.StopClean(t, syscall.SIGTERM, 5*time.Second)
}

// TestConfigReloadUnderIO writes and reads e1.0 through ironaoe without a
// pause while SIGHUP reloads a configuration that removes e1.1 and adds
// e1.2: every request succeeds, e1.1 is gone, e1.2 is found, and a bad
// file on a second SIGHUP changes nothing.
func TestConfigReloadUnderIO(t *testing.T) {
	r := newConfigRig(t)
	tableA, _ := r.exportTable(t, "a", 0)
	tableB, _ := r.exportTable(t, "b", 1)
	tableC, _ := r.exportTable(t, "c", 2)
	r.writeConf(t, tableA, tableB)
	blade := r.startBlade(t)
	sock := r.serveNBD(t)
	c := dialNBD(t, sock, "e1.0")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ioCtx, stopIO := context.WithCancel(ctx)
	var rounds atomic.Int64
	ioDone := make(chan error, 1)
	go func() {
		for off := int64(0); ioCtx.Err() == nil; off = (off + 8*aoe.SectorSize) % (1024 * aoe.SectorSize) {
			if _, err := roundTrip(ctx, c, off, 8*aoe.SectorSize); err != nil {
				ioDone <- err
				return
			}
			rounds.Add(1)
		}
		ioDone <- nil
	}()
	testenv.WaitFor(t, 10*time.Second, "I/O to e1.0", func() bool { return rounds.Load() > 10 })

	r.writeConf(t, tableA, tableC)
	if err := blade.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the reload", func() bool {
		return strings.Contains(blade.Stderr(), "SIGHUP: configuration reloaded")
	})
	before := rounds.Load()
	testenv.WaitFor(t, 10*time.Second, "I/O to e1.0 after the reload", func() bool { return rounds.Load() > before+10 })
	if got, want := strings.Join(r.discovered(t), " "), fmt.Sprintf("e1.0/%d e1.2/%d", 2048*aoe.SectorSize, 2048*aoe.SectorSize); got != want {
		t.Errorf("after the reload discover found %q, want %q\nironblade:\n%s", got, want, blade.Stderr())
	}

	// A bad file: refused with its line, and e1.0 and e1.2 stay.
	r.writeConf(t, tableA, tableC, "[export.d]\nfile = \"/nonexistent\"\nshelf = 1\nslot = 3\ninterfaces = [\"lo\"]\n")
	if err := blade.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wantLine := fmt.Sprintf("%s:%d: [export.d] file", r.conf, strings.Count(tableA+tableC, "\n")+2)
	testenv.WaitFor(t, 10*time.Second, "the refusal naming "+wantLine, func() bool {
		return strings.Contains(blade.Stderr(), "configuration not reloaded") && strings.Contains(blade.Stderr(), wantLine)
	})
	before = rounds.Load()
	testenv.WaitFor(t, 10*time.Second, "I/O to e1.0 after the refusal", func() bool { return rounds.Load() > before+10 })

	stopIO()
	if err := <-ioDone; err != nil {
		t.Fatalf("I/O to e1.0 failed across the reload: %v\nironblade:\n%s", err, blade.Stderr())
	}
	t.Logf("%d write-flush-read rounds on e1.0", rounds.Load())
	blade.StopClean(t, syscall.SIGTERM, 5*time.Second)
}

// TestConfigBadFiles runs ironblade --config on bad files: each is refused
// (exit 1) with one line naming the file and line at fault. --config with
// operands or an export's option is a usage error (exit 2).
func TestConfigBadFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	disk := newDisk(t, 16)
	head := fmt.Sprintf("[defaults]\ninterfaces = [\"lo\"]\n\n[export.a]\nfile = %q\nshelf = 1\nslot = 0\n", disk) // lines 1-7
	for _, tt := range []struct {
		name, conf, want string
	}{
		{"unknown key", head + "read_only = true\n", `:8: unknown key "read_only" in [export.a]`},
		{"duplicate shelf.slot", head + fmt.Sprintf("\n[export.b]\nfile = %q\nslot = 0\nshelf = 1\n", disk), ":12: [export.b]: e1.0 is already exported by [export.a] (line 4)"},
		{"missing file", head + "\n[export.b]\nshelf = 1\nslot = 1\nfile = \"/nonexistent/disk.img\"\n", ":12: [export.b] file: stat /nonexistent/disk.img: no such file or directory"},
	} {
		conf := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".conf")
		if err := os.WriteFile(conf, []byte(tt.conf), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--config", conf).CombinedOutput()
		var exit *exec.ExitError
		want := "ironblade: " + conf + tt.want
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(string(out), want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s: %v, printed %q; want exit status 1 and one line starting %q", tt.name, err, out, want)
		}
	}
	for _, args := range [][]string{{"--config", "x.conf", "1", "2", "lo", disk}, {"--config", "x.conf", "-s"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--config") {
			t.Errorf("ironblade %q: %v, printed %q; want exit status 2 naming --config", args, err, out)
		}
	}
}

// TestConfigSameDeviceTwoVLANs serves e1.0 on two VLANs of one interface,
// which the file allows (they are two devices): both must start, and the
// one metrics endpoint must tell their targets apart by the vlan label.
func TestConfigSameDeviceTwoVLANs(t *testing.T) {
	r := newConfigRig(t)
	tableA, _ := r.exportTable(t, "a", 0)
	tableB, _ := r.exportTable(t, "b", 0)
	r.writeConf(t, tableA+"vlan = 10\n\n", tableB+"vlan = 20\n\n")
	blade := r.startBlade(t)
	testenv.WaitFor(t, 10*time.Second, "both VLANs' targets in the metrics", func() bool {
		if !blade.Running() {
			t.Fatalf("ironblade --config exited: %v\n%s", blade.Err(), blade.Output())
		}
		fams, err := testenv.ScrapeMetrics(r.blade, "127.0.0.1:9192")
		return err == nil &&
			testenv.MetricValue(fams, "ironblade_target_frames_sent_total", "vlan", "10", "slot", "0") > 0 &&
			testenv.MetricValue(fams, "ironblade_target_frames_sent_total", "vlan", "20", "slot", "0") > 0
	})
	if strings.Contains(blade.Stderr(), "level=ERROR") {
		t.Errorf("ironblade logged errors:\n%s", blade.Stderr())
	}
	blade.StopClean(t, syscall.SIGTERM, 5*time.Second)
}

// TestConfigReloadKeepsExportOnBadChange changes a running export to an
// interface that is not there: the file loads, the new settings cannot
// start, and the export must keep serving with its previous ones rather
// than go down until the file is fixed.
func TestConfigReloadKeepsExportOnBadChange(t *testing.T) {
	r := newConfigRig(t)
	tableA, disk := r.exportTable(t, "a", 0)
	r.writeConf(t, tableA)
	blade := r.startBlade(t)
	if got := strings.Join(r.discovered(t), " "); got != fmt.Sprintf("e1.0/%d", 2048*aoe.SectorSize) {
		t.Fatalf("discover found %q before the reload, want e1.0", got)
	}
	bad := fmt.Sprintf("[export.a]\nfile = %q\nshelf = 1\nslot = 0\ninterfaces = [\"ib-nosuchif0\"]\nsync = true\n", disk)
	r.writeConf(t, bad)
	if err := blade.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the reload", func() bool {
		return strings.Contains(blade.Stderr(), "SIGHUP: configuration reloaded")
	})
	if !strings.Contains(blade.Stderr(), "keeps its previous settings") {
		t.Errorf("no word of the export keeping its settings:\n%s", blade.Stderr())
	}
	if got := strings.Join(r.discovered(t), " "); got != fmt.Sprintf("e1.0/%d", 2048*aoe.SectorSize) {
		t.Errorf("discover found %q after a reload to a missing interface, want e1.0 still served\n%s", got, blade.Stderr())
	}
	blade.StopClean(t, syscall.SIGTERM, 5*time.Second)
}
