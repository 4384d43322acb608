//go:build unix

package testenv_test

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/internal/testenv"
)

// shell returns a command running script with sh, skipping without sh.
func shell(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	return exec.Command(testenv.RequireCommand(t, "sh"), "-c", script)
}

// A script that prints to both outputs, then waits for SIGTERM and exits
// with status 3 on it.
const waitForTerm = `echo out; echo err >&2; trap 'exit 3' TERM; while :; do sleep 0.01; done`

func TestProcessOutputAndStop(t *testing.T) {
	p := testenv.StartProcess(t, "sh", shell(t, waitForTerm))
	testenv.WaitFor(t, 5*time.Second, "both outputs", func() bool {
		return strings.Contains(p.Output(), "out") && strings.Contains(p.Output(), "err")
	})
	if p.Stdout() != "out\n" || p.Stderr() != "err\n" {
		t.Errorf("stdout %q, stderr %q; want out and err", p.Stdout(), p.Stderr())
	}
	if !p.Running() {
		t.Fatal("not running before the signal")
	}
	err := p.Stop(t, syscall.SIGTERM, 5*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Stop = %v, want exit status 3", err)
	}
	if p.Running() || p.Err() != err {
		t.Errorf("after Stop: running %v, Err %v", p.Running(), p.Err())
	}
	select {
	case <-p.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
	// Stopping an exited process only reports how it exited.
	if again := p.Stop(t, syscall.SIGTERM, time.Second); again != err {
		t.Errorf("second Stop = %v, want %v", again, err)
	}
}

func TestProcessStopClean(t *testing.T) {
	p := testenv.StartProcess(t, "sh", shell(t, `trap 'exit 0' TERM; echo ready; while :; do sleep 0.01; done`))
	testenv.WaitFor(t, 5*time.Second, "the trap", func() bool { return p.Stdout() != "" })
	if took := p.StopClean(t, syscall.SIGTERM, 5*time.Second); took <= 0 || took > 5*time.Second {
		t.Errorf("StopClean took %v", took)
	}
}

// TestProcessFailures checks that the helpers fail the test where they
// should: they run in subtests whose failure is the expected outcome, and
// so are reported through a recording TB.
func TestProcessFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(tb *recordingTB, t *testing.T)
		want string
	}{
		{"StopClean nonzero status", func(tb *recordingTB, t *testing.T) {
			p := testenv.StartProcess(tb, "sh", shell(t, waitForTerm))
			testenv.WaitFor(t, 5*time.Second, "the trap", func() bool { return p.Stderr() != "" })
			p.StopClean(tb, syscall.SIGTERM, 5*time.Second)
		}, "want status 0"},
		{"StopClean exited early", func(tb *recordingTB, t *testing.T) {
			p := testenv.StartProcess(tb, "sh", shell(t, "exit 0"))
			<-p.Exited()
			p.StopClean(tb, syscall.SIGTERM, time.Second)
		}, "exited before"},
		{"Stop timeout", func(tb *recordingTB, t *testing.T) {
			p := testenv.StartProcess(tb, "sh", shell(t, `trap '' TERM; echo ready; while :; do sleep 0.01; done`))
			testenv.WaitFor(t, 5*time.Second, "the trap", func() bool { return p.Stdout() != "" })
			p.Stop(tb, syscall.SIGTERM, 100*time.Millisecond)
		}, "still running"},
		{"WaitFor timeout", func(tb *recordingTB, t *testing.T) {
			testenv.WaitFor(tb, 20*time.Millisecond, "nothing", func() bool { return false })
		}, "timed out after 20ms waiting for nothing"},
		{"start failure", func(tb *recordingTB, t *testing.T) {
			testenv.StartProcess(tb, "missing", exec.Command("/nonexistent/program"))
		}, "start missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := &recordingTB{TB: t}
			tb.run(func() { tc.run(tb, t) })
			if !strings.Contains(tb.fatal, tc.want) {
				t.Errorf("failure %q, want it to say %q", tb.fatal, tc.want)
			}
		})
	}
}

// TestProcessCleanupKills checks that a process still running when its
// test ends is killed.
func TestProcessCleanupKills(t *testing.T) {
	var p *testenv.Process
	t.Run("leave it running", func(t *testing.T) {
		p = testenv.StartProcess(t, "sleep", exec.Command(testenv.RequireCommand(t, "sleep"), "60"))
	})
	if p.Running() {
		t.Fatal("still running after its test's clean-up")
	}
	var exit *exec.ExitError
	if err := p.Err(); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit %v, want killed", err)
	}
}

func TestRequireCommand(t *testing.T) {
	if path := testenv.RequireCommand(t, "sh"); !strings.HasPrefix(path, "/") {
		t.Errorf("RequireCommand(sh) = %q, want an absolute path", path)
	}
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testenv.RequireCommands(t, "sh", "no-such-program-ironblade")
	})
	if !skipped {
		t.Error("RequireCommands did not skip for a missing program")
	}
}
