package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/bench"
	"github.com/ironblade/ironblade/internal/cliflag"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestCrashBadCommandLines checks that every bad crash command line is a
// usage error (status 2) named in one line, before anything is touched.
func TestCrashBadCommandLines(t *testing.T) {
	target := []string{"-i", "lo", "--device", "e1.0", "--journal", filepath.Join(t.TempDir(), "j")}
	write := func(extra ...string) []string { return append(append([]string{"crash", "write"}, target...), extra...) }
	check := func(extra ...string) []string { return append(append([]string{"crash", "check"}, target...), extra...) }
	cases := []badCommandLine{
		{[]string{"crash"}, "want a subcommand"},
		{[]string{"crash", "erase"}, "unknown subcommand"},
		{[]string{"crash", "write"}, "--interface is required"},
		{[]string{"crash", "write", "-i", "lo"}, "--device"},
		{[]string{"crash", "write", "-i", "lo", "--device", "e1.0"}, "--journal"},
		{[]string{"crash", "write", "-i", "lo", "--device", "x", "--journal", "j"}, "--device"},
		{[]string{"crash", "write", "-i", "lo", "--device", "e65535.0", "--journal", "j"}, "--device"},
		{write("extra"), "unexpected argument"},
		{write("--vlan", "4095"), "--vlan"},
		{write("--scorn-timeout", "0s"), "--scorn-timeout"},
		{write("--wait", "0s"), "--wait"},
		{write("--qd", "0"), "--qd"},
		{write("--block", "1000"), "block size"},
		{write("--block", "0"), "--block"},
		{write("--size", "100KiB"), "size"},
		{write("--size", "0"), "--size"},
		{write("--offset", "7"), "offset"},
		{write("--offset", "x"), "--offset"},
		{write("--flush-at", "100"), "flush at"},
		{write("--size", "64KiB", "--flush-at", "50"), "no block on one side"},
		{write("--frobnicate"), "frobnicate"},
		{check(), "--expect"},
		{check("--expect", "sometimes"), "--expect"},
	}
	checkBadCommandLines(t, cases)
	for _, c := range cases {
		err := newApp(io.Discard, io.Discard).Run(append([]string{"ironbench"}, c.args...))
		if !errors.Is(err, cliflag.ErrUsage) {
			t.Errorf("ironbench %q: %v, want a usage error (status 2)", c.args, err)
		}
	}
	// A journal that is not there is a failure, not a usage error.
	err := newApp(io.Discard, io.Discard).Run(append([]string{"ironbench"}, check("--expect", "durable")...))
	if err == nil || errors.Is(err, cliflag.ErrUsage) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("check of a missing journal: %v, want a failure", err)
	}
}

func TestParseAoEName(t *testing.T) {
	for _, tc := range []struct {
		in    string
		shelf uint16
		slot  uint8
		ok    bool
	}{
		{"e1.0", 1, 0, true}, {"1.0", 1, 0, true}, {"e65534.254", 65534, 254, true},
		{"e65535.0", 0, 0, false}, {"e1.255", 0, 0, false}, {"e1", 0, 0, false}, {"e.1", 0, 0, false},
		{"e-1.0", 0, 0, false}, {"", 0, 0, false}, {"e1.0.0", 0, 0, false},
	} {
		shelf, slot, err := parseAoEName(tc.in)
		if (err == nil) != tc.ok || shelf != tc.shelf || slot != tc.slot {
			t.Errorf("parseAoEName(%q) = %d, %d, %v", tc.in, shelf, slot, err)
		}
	}
}

// TestCrashOverVeth runs the built `ironbench crash` against the real
// ironblade across a veth pair, on VLAN 42 as the demo's segment: write,
// then check with each expectation and each kind of loss, made by zeroing
// journaled blocks in the backing file behind the target's back. Every
// exit status of the contract is checked on the real binary.
func TestCrashOverVeth(t *testing.T) {
	testenv.RequireRoot(t)
	ironblade, ironbench := testenv.BuildBinary(t, "./cmd/ironblade"), testenv.BuildBinary(t, "./cmd/ironbench")
	nsT, nsC := testenv.NewNetns(t), testenv.NewNetns(t)
	veth := testenv.NewVeth(t, nsT, nsC, 1500)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	target := testenv.StartProcess(t, "ironblade", nsT.Command(context.Background(), ironblade, "--vlan", "42", "1", "0", veth.IfA, img))
	journal := filepath.Join(dir, "journal.jsonl")
	link := []string{"-i", veth.IfB, "--vlan", "42", "--device", "e1.0", "--journal", journal, "--wait", "10s"}

	// run runs ironbench in the client's namespace and returns its exit
	// status and output.
	run := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := nsC.Command(ctx, ironbench, args...).CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &exit):
			return exit.ExitCode(), string(out)
		}
		t.Fatalf("ironbench %q: %v\n%s", args, err, out)
		return 0, ""
	}
	checkJSON := filepath.Join(dir, "check.json")
	check := func(what, expect string, want int) crashCheckJSON {
		t.Helper()
		status, out := run(append(append([]string{"crash", "check"}, link...), "--expect", expect, "--json", checkJSON)...)
		t.Logf("%s, --expect %s: status %d: %s", what, expect, status, strings.TrimSpace(out))
		if status != want {
			t.Fatalf("%s, --expect %s: status %d, want %d\n%s", what, expect, status, want, out)
		}
		b, err := os.ReadFile(checkJSON)
		if err != nil {
			t.Fatal(err)
		}
		got := crashCheckJSON{CrashReport: &bench.CrashReport{}}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("--json: %v\n%s", err, b)
		}
		if got.Exit != want || got.Pass != (want == 0) || got.Expect != bench.CrashExpect(expect) || got.Acked != 64 || got.Flushed != 32 {
			t.Errorf("%s, --expect %s: JSON %s", what, expect, b)
		}
		return got
	}

	status, out := run(append(append([]string{"crash", "write"}, link...),
		"--size", "4MiB", "--offset", "1MiB", "--block", "64KiB", "--qd", "8", "--flush-at", "50", "--scorn-timeout", "2s")...)
	if status != 0 || !strings.Contains(out, "64 of 64 blocks acked, 32 flushed") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("crash write: status %d, want 0 and one summary line:\n%s", status, out)
	}
	t.Log(strings.TrimSpace(out))
	f, err := os.Open(journal)
	if err != nil {
		t.Fatal(err)
	}
	j, err := bench.ParseCrashJournal(f)
	f.Close()
	if err != nil || !j.Ended || len(j.Acks) != 64 || j.Run.Offset != 1<<20 {
		t.Fatalf("journal: %+v, %v", j, err)
	}

	check("no loss", "durable", 0)
	check("no loss", "report", 0)
	check("no loss", "flushed", exitNoNegativeControl)

	disk, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	zero := func(flushed bool, n int) {
		t.Helper()
		for _, a := range j.Acks {
			if j.Flushed(a) == flushed && n > 0 {
				if _, err := disk.WriteAt(make([]byte, a.Length), a.Offset); err != nil {
					t.Fatal(err)
				}
				n--
			}
		}
	}
	zero(false, 3)
	check("3 unflushed writes lost", "durable", cliflag.ExitFailure)
	got := check("3 unflushed writes lost", "flushed", 0)
	if got.LostUnflushed != 3 || got.BadFlushed() != 0 || len(got.Bad) != 3 {
		t.Errorf("3 unflushed writes lost: %+v", got.CrashReport)
	}
	zero(true, 1)
	check("a flushed write lost", "flushed", cliflag.ExitFailure)
	check("a flushed write lost", "durable", cliflag.ExitFailure)
	if got := check("a flushed write lost", "report", 0); got.LostFlushed != 1 || got.LostUnflushed != 3 {
		t.Errorf("a flushed write lost: %+v", got.CrashReport)
	}

	// The other statuses: a bad command line, and no target to read from.
	if status, out := run(append(append([]string{"crash", "check"}, link...), "--expect", "maybe")...); status != cliflag.ExitUsage {
		t.Errorf("--expect maybe: status %d, want %d\n%s", status, cliflag.ExitUsage, out)
	}
	target.Stop(t, os.Kill, 5*time.Second)
	status, out = run("crash", "check", "-i", veth.IfB, "--vlan", "42", "--device", "e1.0", "--journal", journal, "--wait", "300ms", "--expect", "report")
	if status != cliflag.ExitFailure || !strings.Contains(out, "no AoE target answered") {
		t.Errorf("check with no target: status %d, want %d\n%s", status, cliflag.ExitFailure, out)
	}
}
