package testenv

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// NotifySocket is a fake systemd notification socket: a unixgram socket a
// test passes to a service as NOTIFY_SOCKET, to see its READY=1, STATUS=,
// RELOADING=1, STOPPING=1 and WATCHDOG=1 messages as systemd would.
type NotifySocket struct {
	// Path is the socket's path, the value for NOTIFY_SOCKET.
	Path string
	msgs chan string
}

// NewNotifySocket listens on a notification socket in dir (t.TempDir()
// when dir is empty) until the test ends. Paths of Unix sockets are short:
// keep dir near the root.
func NewNotifySocket(t testing.TB, dir string) *NotifySocket {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &NotifySocket{Path: path, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

// Next returns the next message, or fails the test after timeout; waitingFor
// says what for, in the failure message.
func (n *NotifySocket) Next(t testing.TB, timeout time.Duration, waitingFor string) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("testenv: no notify message within %v, waiting for %s", timeout, waitingFor)
		return ""
	}
}

// Expect returns the first message with the line want, failing the test if
// none comes within timeout, and the messages that came before it.
func (n *NotifySocket) Expect(t testing.TB, timeout time.Duration, want string) (msg string, before []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := n.Next(t, time.Until(deadline), want)
		if slices.Contains(strings.Split(m, "\n"), want) {
			return m, before
		}
		before = append(before, m)
	}
}

// NotifyStatus returns the STATUS= value of a notification message, or "".
func NotifyStatus(msg string) string {
	for line := range strings.SplitSeq(msg, "\n") {
		if s, ok := strings.CutPrefix(line, "STATUS="); ok {
			return s
		}
	}
	return ""
}
