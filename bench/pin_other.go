//go:build !linux

package bench

import "errors"

// pinning is implemented on Linux only.
type pinning struct {
	target  int
	genList string
}

// newPinning fails: pinning is implemented on Linux only.
func newPinning() (*pinning, error) { return nil, errors.New("CPU pinning needs Linux") }

func (p *pinning) pin() error   { return errors.New("CPU pinning needs Linux") }
func (p *pinning) unpin() error { return nil }
