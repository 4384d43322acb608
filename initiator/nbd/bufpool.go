package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come in power-of-two size classes from 512 bytes to
// DefaultMaxPayload.
const (
	minClassShift = 9
	maxClassShift = 25
)

// bufferPool recycles payload buffers by size class, so a connection in
// steady state allocates none. Its zero value is ready to use.
type bufferPool struct {
	classes [maxClassShift - minClassShift + 1]sync.Pool
}

// sizeClass returns the index of the smallest class holding n bytes
// (0 < n <= DefaultMaxPayload).
func sizeClass(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// get returns a buffer of length n.
func (p *bufferPool) get(n int) *[]byte {
	c := sizeClass(n)
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

// put recycles a buffer obtained from get.
func (p *bufferPool) put(b *[]byte) {
	p.classes[sizeClass(cap(*b))].Put(b)
}
