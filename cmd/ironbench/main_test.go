package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the commands the tests run once for all of them.
func TestMain(m *testing.M) { testenv.RunTests(m) }

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"512", 512}, {"4K", 4 << 10}, {"8MiB", 8 << 20}, {"8 mib", 8 << 20}, {"1G", 1 << 30},
		{"2GiB", 2 << 30}, {"1MB", 1e6}, {"3KB", 3000}, {"100B", 100}, {"1TiB", 1 << 40},
	} {
		if got, err := parseSize(c.in); err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5M", "12X", "99999999999T", "0x10"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func TestParseLists(t *testing.T) {
	if got, err := parseInts("1, 16,64", 1, 4096); err != nil || !slices.Equal(got, []int{1, 16, 64}) {
		t.Errorf("parseInts: %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,,2", "5000", "x"} {
		if _, err := parseInts(bad, 1, 4096); err == nil {
			t.Errorf("parseInts(%q) succeeded", bad)
		}
	}
	if got, err := parseOps("read,write"); err != nil || !slices.Equal(got, []bench.Op{bench.Read, bench.Write}) {
		t.Errorf("parseOps: %v, %v", got, err)
	}
	if _, err := parseOps("read,trim"); err == nil {
		t.Error("parseOps(read,trim) succeeded")
	}
	if got, err := parseModes("no, yes"); err != nil || !slices.Equal(got, []bool{false, true}) {
		t.Errorf("parseModes: %v, %v", got, err)
	}
	if _, err := parseModes("maybe"); err == nil {
		t.Error("parseModes(maybe) succeeded")
	}
	for in, want := range map[string][]bool{"on": {true}, "off": {false}, " Both": {true, false}} {
		if got, err := parsePin(in, io.Discard); err != nil || !slices.Equal(got, want) {
			t.Errorf("parsePin(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if got, err := parsePin("auto", io.Discard); err != nil || len(got) == 0 || got[len(got)-1] {
		t.Errorf("parsePin(auto) = %v, %v; want modes ending unpinned", got, err)
	}
	if _, err := parsePin("half", io.Discard); err == nil {
		t.Error("parsePin(half) succeeded")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{100: "100 bytes", 1536: "1.5 KiB", 8 << 20: "8.0 MiB", 2 << 30: "2 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// badCommandLine is a command line that must fail, with a word the error
// must contain ("" for any error).
type badCommandLine struct {
	args []string
	want string
}

// checkBadCommandLines runs each command line and checks that it fails
// with the error wanted.
func checkBadCommandLines(t *testing.T, cases []badCommandLine) {
	t.Helper()
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := newApp(&out, &errOut).Run(append([]string{"ironbench"}, c.args...))
		if err == nil {
			t.Errorf("ironbench %q succeeded, want an error about %s", c.args, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ironbench %q: %v, want it to mention %s", c.args, err, c.want)
		}
	}
}

// TestBadCommandLines checks that bad input gets a clear error before
// anything is touched.
func TestBadCommandLines(t *testing.T) {
	checkBadCommandLines(t, []badCommandLine{
		{[]string{"compare", "--qd", "0"}, "--qd"},
		{[]string{"compare", "--mtu", "20"}, "--mtu"},
		{[]string{"compare", "--ops", "trim"}, "--ops"},
		{[]string{"compare", "--sync", "sometimes"}, "--sync"},
		{[]string{"compare", "--size", "1K"}, "--size"},
		{[]string{"compare", "--duration", "0s"}, "--duration"},
		{[]string{"compare", "extra"}, "unexpected argument"},
		{[]string{"compare", "--repeat", "0"}, "--repeat"},
		{[]string{"compare", "--pin", "sometimes"}, "--pin"},
		{[]string{"auth", "--pin", "half"}, "auth: --pin"},
		{[]string{"responder"}, "want one argument"},
		{[]string{"responder", "--slot", "255", "eth0"}, "--slot"},
		{[]string{"responder", "--sectors", "0", "eth0"}, "--sectors"},
		{[]string{"auth", "--qd", "0"}, "auth: --qd"},
		{[]string{"auth", "--mtu", "20"}, "auth: --mtu"},
		{[]string{"auth", "--ops", "trim"}, "auth: --ops"},
		{[]string{"auth", "--repeat", "101"}, "auth: --repeat"},
		{[]string{"auth", "--duration", "0s"}, "auth: --duration"},
		{[]string{"auth", "extra"}, "unexpected argument"},
		{[]string{"verify"}, "interface"},
		{[]string{"verify", "-i", "lo", "--size", "100"}, "--size"},
		{[]string{"verify", "-i", "lo", "--offset", "7"}, "--offset"},
		{[]string{"verify", "-i", "lo", "--qd", "0"}, "--qd"},
		{[]string{"report"}, "want one argument"},
		{[]string{"report", "/nonexistent.json"}, "no such file"},
		{[]string{"frobnicate"}, ""},
	})
}

// TestReportCommand renders a saved comparison.
func TestReportCommand(t *testing.T) {
	rep := &bench.Report{CellTime: "3s", Cells: []bench.Cell{
		{Target: "ironblade", MTU: 1500, Op: "read", QueueDepth: 16, MBps: 30},
		{Target: "vblade", MTU: 1500, Op: "read", QueueDepth: 16, MBps: 20},
	}}
	path := filepath.Join(t.TempDir(), "run.json")
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := newApp(&out, io.Discard).Run([]string{"ironbench", "report", path}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 1500 | no | read | 16 | ironblade | 0 | 30.0 |") || !strings.Contains(out.String(), "1.50x") {
		t.Errorf("report output:\n%s", out.String())
	}
	// A sealed-against-plain run prints its own table.
	auth := &bench.Report{Kind: bench.KindAuth, CellTime: "3s", Cells: []bench.Cell{
		{Target: bench.TargetPlain, MTU: 1500, Op: "read", QueueDepth: 16, IOPS: 1000, MBps: 1},
		{Target: bench.TargetSealed, MTU: 1500, Op: "read", QueueDepth: 16, IOPS: 950, MBps: 0.95},
	}}
	js.Reset()
	if err := auth.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := newApp(&out, io.Discard).Run([]string{"ironbench", "report", path}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 1500 | read | 16 | 1000 | 950 | 0.95x |") || !strings.Contains(out.String(), "costs 5.0%: met") {
		t.Errorf("report output of an auth run:\n%s", out.String())
	}
	empty := filepath.Join(t.TempDir(), "empty.json")
	_ = os.WriteFile(empty, []byte(`{"cells":[]}`), 0o644)
	if err := newApp(&out, io.Discard).Run([]string{"ironbench", "report", empty}); err == nil {
		t.Error("report of an empty comparison succeeded")
	}
}

// TestVerifyOverVeth runs `ironbench verify` against the real ironblade
// across a veth pair, as the quick start does.
func TestVerifyOverVeth(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.BuildBinary(t, "./cmd/ironblade")
	nsT, nsC := testenv.NewNetns(t), testenv.NewNetns(t)
	veth := testenv.NewVeth(t, nsT, nsC, 9000)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	cmd := nsT.Command(context.Background(), bin, "3", "4", veth.IfA, img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var out, errOut bytes.Buffer
	err := nsC.Do(func() error {
		// The whole command runs on this goroutine, so its raw socket is
		// opened in the client's namespace.
		return newApp(&out, &errOut).Run([]string{"ironbench", "verify", "-i", veth.IfB, "--size", "2MiB", "--offset", "1MiB", "--qd", "32"})
	})
	if err != nil {
		t.Fatalf("ironbench verify: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"found e3.4@", `model "ironblade"`, "32768 sectors", "17 sectors per frame", "OK: the data read back matches"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// With no target on the wire, verify fails after --wait.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	start := time.Now()
	err = nsC.Do(func() error {
		return newApp(&out, &errOut).Run([]string{"ironbench", "verify", "-i", veth.IfB, "--wait", "300ms"})
	})
	if err == nil || !strings.Contains(err.Error(), "no AoE target answered") || time.Since(start) > 5*time.Second {
		t.Errorf("verify with no target: %v after %v; want a prompt \"no AoE target answered\"", err, time.Since(start))
	}
}

// TestCompareCommand runs the built `ironbench compare` on one small cell
// against ironblade, vblade and its own responder, pinned and unpinned
// where the machine can pin, and reads its JSON.
func TestCompareCommand(t *testing.T) {
	testenv.RequireRoot(t)
	vblade, err := exec.LookPath("vblade")
	if err != nil {
		if _, serr := os.Stat(bench.DefaultVblade); serr != nil {
			t.Skip("needs vblade (Debian package vblade) to compare with")
		}
		vblade = bench.DefaultVblade
	}
	ironblade, ironbench := testenv.BuildBinary(t, "./cmd/ironblade"), testenv.BuildBinary(t, "./cmd/ironbench")
	modes, _ := bench.DefaultPinModes()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	cmd := exec.CommandContext(ctx, ironbench, "compare", "--ironblade", ironblade, "--vblade", vblade, "--dir", t.TempDir(),
		"--size", "16MiB", "--duration", "200ms", "--warmup", "50ms", "--qd", "4", "--mtu", "1500", "--ops", "read",
		"--sync", "no", "--json")
	cmd.Stdout, cmd.Stderr = &out, &progress
	if err := cmd.Run(); err != nil {
		t.Fatalf("ironbench compare: %v\n%s", err, progress.String())
	}
	var rep struct {
		bench.Report
		Rows []bench.Row `json:"rows"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Cells) != 3*len(modes) || len(rep.Rows) != len(modes) || !slices.Equal(rep.PinModes, modes) {
		t.Fatalf("%d cells, %d rows, modes %v; want %d, %d, %v\n%s", len(rep.Cells), len(rep.Rows), rep.PinModes,
			3*len(modes), len(modes), modes, progress.String())
	}
	for _, c := range rep.Cells {
		if c.Error != "" || c.IOPS <= 0 || c.SectorsPerFrame != 2 {
			t.Errorf("%s: %+v", c.Target, c)
		}
	}
	for _, row := range rep.Rows {
		if row.Ratio <= 0 || row.Ceiling == nil || row.Ceiling.Target != bench.TargetCeiling || row.IronbladeOfLink <= 0 {
			t.Errorf("row %+v: want a ratio and a share of the link's ceiling", row)
		}
	}
	if !strings.Contains(progress.String(), "ceiling   MTU 1500") {
		t.Errorf("no progress line of the ceiling:\n%s", progress.String())
	}
}
