package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/internal/testenv"
)

func TestParseTargets(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"both", []string{"ironblade", "vblade"}},
		{"ironblade", []string{"ironblade"}},
		{" VBlade ", []string{"vblade"}},
		{"vblade,ironblade", []string{"vblade", "ironblade"}},
	} {
		if got, err := parseTargets(c.in); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseTargets(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "aoe", "both,", "ironblade;vblade"} {
		if got, err := parseTargets(bad); err == nil {
			t.Errorf("parseTargets(%q) = %v, want an error", bad, got)
		}
	}
}

// TestNBDBadCommandLines checks that bad input gets a clear error before
// anything is set up.
func TestNBDBadCommandLines(t *testing.T) {
	checkBadCommandLines(t, []badCommandLine{
		{[]string{"nbd", "--target", "nbdkit"}, "--target"},
		{[]string{"nbd", "--mtu", "10"}, "--mtu"},
		{[]string{"nbd", "--qd", "0"}, "--qd"},
		{[]string{"nbd", "--size", "1000"}, "--size"},
		{[]string{"nbd", "--size", "1MiB1"}, "--size"},
		{[]string{"nbd", "--repeat", "0"}, "--repeat"},
		{[]string{"nbd", "--min-rto", "0s"}, "--min-rto"},
		{[]string{"nbd", "extra"}, "unexpected argument"},
		{[]string{"nbd", "--ironaoe", "/nonexistent/ironaoe"}, ""},
	})
}

// TestNBDSmoke runs `ironbench nbd` end to end on a tiny export at MTU 1500
// against ironblade, and checks that every pass moved data.
func TestNBDSmoke(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"nbdcopy", "nbdinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package libnbd-bin): %v", tool, err)
		}
	}
	dir := t.TempDir()
	ironblade, ironaoe := testenv.BuildBinary(t, "./cmd/ironblade"), testenv.BuildBinary(t, "./cmd/ironaoe")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var out, progress bytes.Buffer
	// --warm: dropping the page cache would slow every other test
	// running meanwhile, and says nothing more about the tool working.
	err := newApp(&out, &progress).RunContext(ctx, []string{"ironbench", "nbd", "--mtu", "1500", "--size", "8MiB",
		"--target", "ironblade", "--warm", "--json", "--ironblade", ironblade, "--ironaoe", ironaoe,
		"--dir", dir, "--source-dir", dir})
	if err != nil {
		t.Fatalf("ironbench nbd: %v\nprogress:\n%s", err, progress.String())
	}
	var rep struct {
		bench.NBDReport
		Rows []bench.NBDRow `json:"rows"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if len(rep.Cells) != 6 { // write and read: raw at QD 16 and 64, and via NBD
		t.Errorf("%d passes, want 6", len(rep.Cells))
	}
	for _, c := range rep.Cells {
		if c.Error != "" || c.MBps <= 0 || c.Bytes != 8<<20 || c.Seconds <= 0 {
			t.Errorf("pass %+v: want 8 MiB moved at a positive rate, no error", c)
		}
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want write and read", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if r.RawMBps <= 0 || r.NBDMBps <= 0 || r.Ratio <= 0 || r.Runs != 1 {
			t.Errorf("row %+v: want positive figures from one run", r)
		}
		t.Logf("MTU %d %s %s: raw %.1f MB/s (QD %d), via NBD %.1f MB/s, ratio %.0f%%",
			r.MTU, r.Target, r.Op, r.RawMBps, r.RawQueueDepth, r.NBDMBps, r.Ratio*100)
	}
	if !strings.Contains(progress.String(), "via NBD") {
		t.Errorf("no progress lines:\n%s", progress.String())
	}
}
