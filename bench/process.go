package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ironblade/ironblade/internal/netlab"
)

// This file holds the programs a bench starts in a network namespace:
// targets, ironaoe serve. Their last words explain a failure.

// process is a target or other program a bench started.
type process struct {
	name    string
	cmd     *exec.Cmd
	out     tailBuffer
	exited  chan error
	stopped bool
	stopErr error
}

// startIn starts a program in ns.
func startIn(ns *netlab.Netns, name, path string, args ...string) (*process, error) {
	p := &process{name: name, exited: make(chan error, 1)}
	p.cmd = ns.Command(context.Background(), path, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	return p, nil
}

// stop ends the program with SIGTERM and waits for it; later calls return
// the first one's result.
func (p *process) stop() error {
	if !p.stopped {
		p.stopped = true
		p.stopErr = p.terminate()
	}
	return p.stopErr
}

// said adds to err what the program printed last.
func (p *process) said(err error) error {
	return fmt.Errorf("%w; %s said: %s", err, p.name, p.out.String())
}

// terminate sends SIGTERM and waits for the program to exit: ironblade
// writes its file back first, which can take a while after a write run.
// vblade has no SIGTERM handler and is killed by it.
func (p *process) terminate() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
			return fmt.Errorf("%s exited: %w; it said: %s", p.name, err, p.out.String())
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still running 2 min after SIGTERM; killed", p.name)
	}
}

// tailBuffer keeps the last 2 KiB written to it: enough of a target's
// output to say why it failed. It is safe for the process's two streams.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// tailLen is how much output a tailBuffer keeps.
const tailLen = 2 << 10

// Write implements io.Writer.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > tailLen {
		b.buf = b.buf[len(b.buf)-tailLen:]
	}
	return len(p), nil
}

// String returns the kept output on one line.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := string(bytes.TrimSpace(b.buf))
	if s == "" {
		return "nothing"
	}
	return strings.ReplaceAll(s, "\n", " | ")
}
