package main

// End-to-end test of every verb of ironbladectl against the real
// ironblade, on its vblade command line and with a configuration file of
// two exports, with a test initiator at the far end of a veth pair to see
// the changes take effect on the wire.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/bladectl"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the commands once for the tests that run them.
func TestMain(m *testing.M) { testenv.RunTests(m) }

// ctlRig is ironblade in one namespace, a test initiator in another, and
// ironbladectl on the host, which reaches the control socket by its path.
type ctlRig struct {
	ironblade, ctl string
	blade          *netlab.Netns
	veth           *netlab.Veth
	client         *aoetest.Client
	dir, sock      string
	stateDir       string
}

func newCtlRig(t *testing.T) *ctlRig {
	testenv.RequireRoot(t)
	r := &ctlRig{
		ironblade: testenv.BuildBinary(t, "./cmd/ironblade"),
		ctl:       testenv.BuildBinary(t, "./cmd/ironbladectl"),
		dir:       t.TempDir(),
	}
	r.sock = filepath.Join(r.dir, "run", "ctl.sock")
	r.stateDir = filepath.Join(r.dir, "state")
	r.blade = testenv.NewNetns(t)
	clientNS := testenv.NewNetns(t)
	r.veth = testenv.NewVeth(t, r.blade, clientNS, 0)
	link := testenv.ListenRawIn(t, clientNS, r.veth.IfB, rawlink.Config{})
	r.client = aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 200 * time.Millisecond, Retries: 2})
	t.Cleanup(func() { r.client.Close() })
	return r
}

// disk makes a 1 MiB file to export.
func (r *ctlRig) disk(t *testing.T, name string) string {
	path := filepath.Join(r.dir, name)
	if err := os.WriteFile(path, make([]byte, 2048*aoe.SectorSize), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs ironblade with args (and --control) and waits for its
// control socket to answer.
func (r *ctlRig) start(t *testing.T, args ...string) *testenv.Process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	args = append([]string{"--control", r.sock}, args...)
	p := testenv.StartProcess(t, "ironblade", r.blade.Command(ctx, r.ironblade, args...))
	testenv.WaitFor(t, 10*time.Second, "the control socket", func() bool {
		if !p.Running() {
			t.Fatalf("ironblade exited: %v\n%s", p.Err(), p.Output())
		}
		_, err := bladectl.Call(context.Background(), r.sock, bladectl.Request{Verb: "list"})
		return err == nil
	})
	return p
}

// run runs ironbladectl and returns its stdout, stderr and exit status.
func (r *ctlRig) run(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, r.ctl, append([]string{"--control", r.sock}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatalf("ironbladectl %v: %v", args, err)
	}
	return out.String(), errb.String(), status
}

// ok runs ironbladectl, expects success and returns its stdout.
func (r *ctlRig) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, status := r.run(t, args...)
	if status != 0 {
		t.Fatalf("ironbladectl %s: exit %d\n%s%s", strings.Join(args, " "), status, out, errOut)
	}
	return out
}

// exports runs ironbladectl with --json and decodes its exports.
func (r *ctlRig) exports(t *testing.T, args ...string) []bladectl.Export {
	t.Helper()
	out := r.ok(t, append(args, "--json")...)
	var res struct {
		Exports []bladectl.Export `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ironbladectl %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return res.Exports
}

// fails runs ironbladectl and expects exit status want and stderr with msg.
func (r *ctlRig) fails(t *testing.T, want int, msg string, args ...string) {
	t.Helper()
	_, errOut, status := r.run(t, args...)
	if status != want || !strings.Contains(errOut, msg) {
		t.Fatalf("ironbladectl %s: exit %d, stderr %q; want exit %d with %q", strings.Join(args, " "), status, errOut, want, msg)
	}
}

// device is e1.slot as the initiator sees it.
func (r *ctlRig) device(slot uint8) aoetest.Device {
	return aoetest.Device{MAC: r.veth.MACA, Shelf: 1, Slot: slot, SectorsPerFrame: 2}
}

// write writes one sector to e1.slot and returns the error.
func (r *ctlRig) write(slot uint8) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.client.WriteAt(ctx, r.device(slot), aoetest.RandomBytes(aoe.SectorSize), 0, 1)
}

// configString reads e1.slot's config string with Query Config.
func (r *ctlRig) configString(t *testing.T, slot uint8) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	arg, err := (&aoe.Config{Command: aoe.ConfigRead}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f, err := r.client.Do(ctx, r.veth.MACA, aoe.Header{Major: 1, Minor: slot, Command: aoe.CommandQueryConfig}, arg)
	if err != nil {
		t.Fatalf("Query Config e1.%d: %v", slot, err)
	}
	var c aoe.Config
	if err := c.UnmarshalBinary(f.Arg); err != nil {
		t.Fatal(err)
	}
	return string(c.String)
}

// TestCtlEveryVerb runs every verb of ironbladectl, with and without
// --json, against ironblade's vblade command line and a configuration
// file of two exports, and checks the effects on the wire.
func TestCtlEveryVerb(t *testing.T) {
	t.Run("command line", func(t *testing.T) {
		r := newCtlRig(t)
		p := r.start(t, "--state-dir", r.stateDir, "-s", "1", "0", r.veth.IfA, r.disk(t, "d0"))
		r.everyVerb(t, 0, "")
		r.stopped(t, p)
	})
	t.Run("config file", func(t *testing.T) {
		r := newCtlRig(t)
		conf := filepath.Join(r.dir, "ironblade.conf")
		var tables string
		for slot, name := range []string{"alpha", "beta"} {
			tables += fmt.Sprintf("[export.%s]\nfile = %q\nshelf = 1\nslot = %d\ninterfaces = [%q]\nstate-dir = %q\nread-only = %v\n\n",
				name, r.disk(t, name), slot, r.veth.IfA, r.stateDir, slot == 1)
		}
		if err := os.WriteFile(conf, []byte(tables), 0o600); err != nil {
			t.Fatal(err)
		}
		p := r.start(t, "--config", conf)
		exports := r.exports(t, "list")
		if len(exports) != 2 || exports[0].Name != "alpha" || exports[1].Name != "beta" || !exports[1].ReadOnly {
			t.Fatalf("list: %+v", exports)
		}
		// A change to e1.0 leaves e1.1 alone.
		r.ok(t, "reserve", "set", "e1.0", "02:00:00:00:00:99")
		if x := r.exports(t, "reserve", "list", "e1.1"); len(x) != 1 || len(x[0].Paths[0].Reserve) != 0 {
			t.Fatalf("reserve list e1.1 after reserving e1.0: %+v", x)
		}
		r.ok(t, "reserve", "clear", "e1.0")
		r.everyVerb(t, 0, "alpha")
		r.ok(t, "config", "set", "e1.1", "beta-host")
		if got := r.configString(t, 1); got != "beta-host" {
			t.Fatalf("Query Config e1.1 = %q", got)
		}
		r.stopped(t, p)
	})
}

// everyVerb runs each verb on e1.slot, served alone or beside others.
func (r *ctlRig) everyVerb(t *testing.T, slot uint8, name string) {
	target := fmt.Sprintf("e1.%d", slot)
	other := "02:00:00:00:00:99" // an initiator that is not the test's
	mine := r.veth.MACB.String()

	// list
	out := r.ok(t, "list")
	if !strings.Contains(out, "TARGET") || !strings.Contains(out, target) || !strings.Contains(out, "serving") {
		t.Errorf("list:\n%s", out)
	}
	x := r.exports(t, "list", target)
	if len(x) != 1 || x[0].Target != target || x[0].Name != name || x[0].State != "serving" || x[0].Size != 2048*aoe.SectorSize ||
		!slices.Equal(x[0].Interfaces, []string{r.veth.IfA}) || len(x[0].Paths) != 1 || x[0].Paths[0].State != "serving" {
		t.Errorf("list %s --json: %+v", target, x)
	}

	// stat, after some I/O
	if err := r.write(slot); err != nil {
		t.Fatalf("write: %v", err)
	}
	if out := r.ok(t, "stat", target); !strings.Contains(out, "FRAMES-IN") || !strings.Contains(out, target) {
		t.Errorf("stat:\n%s", out)
	}
	x = r.exports(t, "stat", target)
	if len(x) != 1 || x[0].Paths[0].Stats == nil || x[0].Paths[0].Stats.FramesIn == 0 || x[0].Paths[0].Stats.BytesWritten < aoe.SectorSize {
		t.Errorf("stat --json: %+v", x)
	}

	// reserve: set, a write from another initiator is refused, clear
	r.ok(t, "reserve", "set", target, other)
	if err := r.write(slot); !errors.Is(err, aoe.ErrorTargetReserved) {
		t.Fatalf("write while reserved to another: %v, want a reservation conflict", err)
	}
	if out := r.ok(t, "reserve", "list", target); !strings.Contains(out, other) {
		t.Errorf("reserve list:\n%s", out)
	}
	if x := r.exports(t, "reserve", "list", target); !slices.Equal(x[0].Paths[0].Reserve, []string{other}) {
		t.Errorf("reserve list --json: %+v", x[0].Paths)
	}
	r.checkState(t, slot, func(st state) bool { return slices.Equal(st.Reserve, []string{other}) })
	if x := r.exports(t, "reserve", "clear", target); len(x[0].Paths[0].Reserve) != 0 {
		t.Errorf("reserve clear --json: %+v", x[0].Paths)
	}
	if err := r.write(slot); err != nil {
		t.Fatalf("write after reserve clear: %v", err)
	}
	r.checkState(t, slot, func(st state) bool { return len(st.Reserve) == 0 })

	// mask: add another initiator, and the test's gets no answer
	r.ok(t, "mask", "add", target, other)
	if err := r.write(slot); !errors.Is(err, aoe.ErrNoResponse) {
		t.Fatalf("write from a masked initiator: %v, want no response", err)
	}
	if x := r.exports(t, "mask", "add", target, mine); !slices.Equal(x[0].Paths[0].MACMask, []string{other, mine}) {
		t.Errorf("mask add --json: %+v", x[0].Paths)
	}
	if err := r.write(slot); err != nil {
		t.Fatalf("write once in the mask: %v", err)
	}
	if out := r.ok(t, "mask", "list", target); !strings.Contains(out, other+","+mine) {
		t.Errorf("mask list:\n%s", out)
	}
	r.ok(t, "mask", "remove", target, mine)
	if err := r.write(slot); !errors.Is(err, aoe.ErrNoResponse) {
		t.Fatalf("write once removed from the mask: %v, want no response", err)
	}
	r.checkState(t, slot, func(st state) bool { return slices.Equal(st.MACMask, []string{other}) })
	r.ok(t, "mask", "clear", target)
	if x := r.exports(t, "mask", "list", target); len(x[0].Paths[0].MACMask) != 0 {
		t.Errorf("mask list --json after clear: %+v", x[0].Paths)
	}
	if err := r.write(slot); err != nil {
		t.Fatalf("write after mask clear: %v", err)
	}
	r.fails(t, 1, "bad directive", "mask", "add", target, "01:00:5e:00:00:01")

	// config: set, refused over another string unless forced, clear
	r.ok(t, "config", "set", target, "host a")
	if got := r.configString(t, slot); got != "host a" {
		t.Fatalf("Query Config after config set = %q", got)
	}
	r.fails(t, 1, "--force", "config", "set", target, "host-b")
	if x := r.exports(t, "config", "set", target, "--force", "host-b"); x[0].Paths[0].ConfigString != "host-b" {
		t.Errorf("config set --force --json: %+v", x[0].Paths)
	}
	if out := r.ok(t, "config", "get", target); !strings.Contains(out, `"host-b"`) {
		t.Errorf("config get:\n%s", out)
	}
	if x := r.exports(t, "config", "get"); len(x) == 0 || x[slot].Paths[0].ConfigString != "host-b" {
		t.Errorf("config get --json: %+v", x)
	}
	r.checkState(t, slot, func(st state) bool { return string(st.ConfigString) == "host-b" })
	r.ok(t, "config", "clear", target)
	if got := r.configString(t, slot); got != "" {
		t.Fatalf("Query Config after config clear = %q", got)
	}

	// mistakes
	r.fails(t, 1, "no process serves e7.7", "config", "set", "e7.7", "x")
	r.fails(t, 2, "which MAC", "reserve", "set", target)
	r.fails(t, 2, "unknown operation", "mask", "frob", target)
	r.fails(t, 2, "eSHELF.SLOT", "list", "e1.x")
}

// state is a target's state file (target/state.go).
type state struct {
	ConfigString []byte   `json:"config_string"`
	MACMask      []string `json:"mac_mask"`
	Reserve      []string `json:"reserve"`
}

// checkState checks e1.slot's file in the state dir.
func (r *ctlRig) checkState(t *testing.T, slot uint8, ok func(state) bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.stateDir, fmt.Sprintf("e1.%d.json", slot)))
	var st state
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || !ok(st) {
		t.Errorf("state file: %v\n%s", err, b)
	}
}

// stopped stops ironblade and checks that its socket went with it.
func (r *ctlRig) stopped(t *testing.T, p *testenv.Process) {
	t.Helper()
	p.StopClean(t, syscall.SIGTERM, 5*time.Second)
	if _, err := os.Lstat(r.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket after exit: %v", err)
	}
	r.fails(t, 1, "control socket", "list")
}
