package testenv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer that a process or a logger may write while
// the test reads it. The zero value is empty and ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Process is a long-running command that a test started with StartProcess.
type Process struct {
	// Name names the process in failure messages and logs.
	Name string
	// Cmd is the running command; tests signal it through Cmd.Process.
	// With `ip netns exec` (Netns.Command) its pid is the command's own,
	// as ip execs it.
	Cmd *exec.Cmd

	stdout, stderr, output SyncBuffer
	exited                 chan struct{}
	err                    error // how it exited; set before exited is closed
}

// StartProcess starts cmd and captures its standard output and error,
// unless the caller set cmd.Stdout or cmd.Stderr. In t.Cleanup the process
// is killed if it is still running, and its output is logged if the test
// failed. It fails the test if cmd cannot start.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Name: name, Cmd: cmd, exited: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = io.MultiWriter(&p.stdout, &p.output)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = io.MultiWriter(&p.stderr, &p.output)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.Running() {
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Stdout returns what the process has written to its standard output.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process has written to its standard error.
func (p *Process) Stderr() string { return p.stderr.String() }

// Output returns the process's standard output and error as they came,
// interleaved.
func (p *Process) Output() string { return p.output.String() }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err waits for the process to exit and reports how it did, as
// exec.Cmd.Wait does (nil for status 0).
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop sends sig and waits up to timeout for the process to exit, failing
// the test if it is still running then. It returns how the process exited
// (nil for status 0), as Err does.
func (p *Process) Stop(t testing.TB, sig os.Signal, timeout time.Duration) error {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && p.Running() {
		t.Fatalf("testenv: signal %s: %v", p.Name, err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("testenv: %s still running %v after %v\noutput:\n%s", p.Name, timeout, sig, p.Output())
		return nil
	}
}

// StopClean is Stop for a process that must run until it is signalled and
// then exit with status 0 within timeout: it fails the test otherwise. It
// returns how long the process took to exit.
func (p *Process) StopClean(t testing.TB, sig os.Signal, timeout time.Duration) time.Duration {
	t.Helper()
	if !p.Running() {
		t.Fatalf("testenv: %s exited before %v: %v\noutput:\n%s", p.Name, sig, p.err, p.Output())
	}
	start := time.Now()
	if err := p.Stop(t, sig, timeout); err != nil {
		t.Fatalf("testenv: %s exited with %v after %v, want status 0\noutput:\n%s", p.Name, err, sig, p.Output())
	}
	return time.Since(start)
}

// RequireCommand returns the path of the program name, found in PATH or
// else in /usr/sbin or /sbin (which a user's PATH or sudo's secure_path may
// leave out), and skips the test when it is not installed.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, serr := exec.LookPath(filepath.Join(dir, name)); serr == nil {
			return p
		}
	}
	t.Skipf("testenv: needs %s: %v", name, err)
	return ""
}

// RequireCommands skips the test unless every named program is installed
// (see RequireCommand).
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		RequireCommand(t, n)
	}
}
