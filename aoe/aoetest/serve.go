package aoetest

import (
	"context"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// serveStopTimeout bounds how long ServeLink's clean-up waits for serve.
const serveStopTimeout = 10 * time.Second

// ServeLink runs serve (a target's Serve method, say) on link until the
// test ends. In t.Cleanup it cancels serve's context, fails the test if
// serve returns an error or has not returned within 10 s, and closes link.
func ServeLink(t testing.TB, link aoe.Link, serve func(context.Context, aoe.Link) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, link) }()
	t.Cleanup(func() {
		defer link.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("aoetest: Serve on %v: %v", link.HardwareAddr(), err)
			}
		case <-time.After(serveStopTimeout):
			t.Errorf("aoetest: Serve on %v still running %v after the test ended", link.HardwareAddr(), serveStopTimeout)
		}
	})
}
