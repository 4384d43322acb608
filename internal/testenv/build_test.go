package testenv_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain lets TestBuildBinary check that a build is reused.
func TestMain(m *testing.M) { testenv.RunTests(m) }

func TestBuildBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a go build")
	}
	bin := testenv.BuildBinary(t, "./cmd/ironblade")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), testenv.BinaryVersion) {
		t.Errorf("%s --version: %v, %q; want %s", bin, err, out, testenv.BinaryVersion)
	}
	if again := testenv.BuildBinary(t, "./cmd/ironblade"); again != bin {
		t.Errorf("second BuildBinary = %s, want the first build, %s", again, bin)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Errorf("the binary is gone after the test that built it: %v", err)
	}
}

func TestBuildBinaryFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a go build")
	}
	tb := &recordingTB{TB: t}
	tb.run(func() { testenv.BuildBinary(tb, "./no/such/package") })
	if !strings.Contains(tb.fatal, "go build ./no/such/package") {
		t.Errorf("failure %q, want it to name the failed go build", tb.fatal)
	}
}
