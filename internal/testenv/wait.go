package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond, at first every millisecond and then less often (up
// to every 16 ms), until it holds; it fails the test if cond still does not
// hold after timeout. what says what is awaited, for the failure message.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 16*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
	}
}

// WaitReturn waits up to timeout for the result of what on done (as sent
// by the goroutine that runs it) and fails the test unless it is nil.
func WaitReturn(t testing.TB, what string, done <-chan error, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
	}
}
