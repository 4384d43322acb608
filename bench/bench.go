// Package bench measures AoE targets from the initiator's side.
//
// Its load generator keeps a fixed number of ATA requests in flight on an
// aoe link, retransmits the ones whose answer is late (as a real initiator
// must: vblade drops frames beyond its socket buffers), and records each
// request's latency in an HDR histogram. Run drives it for a fixed time
// with random reads or writes; Verify writes a region, reads it back and
// compares. Discover and Identify find a target and its capacity.
//
// Compare runs ironblade and vblade one after the other on a veth pair
// between two network namespaces it creates, under the same generator, and
// reports both and their ratio (Report): each cell pinned (target and
// generator on CPUs of their own, so that each target's own cost decides
// its throughput) and unpinned, beside the link's ceiling (Respond, a
// responder without storage, run as `ironbench responder`) and, for -s
// writes, the disk's group-commit ceiling. It needs root. CompareAuth does the
// same with ironblade plain and ironblade --auth-key, the generator sealing
// its frames (crypto/seal) for the latter: what authentication costs.
package bench

import (
	"fmt"
	"strings"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// Link is the link the generator drives: an aoe.Link whose reads can be
// given a deadline, so that one goroutine can both wait for answers and
// retransmit late requests. rawlink.Link is one; when a Link is also an
// aoe.BatchLink, frames are moved in batches.
type Link interface {
	aoe.Link
	// SetReadDeadline makes reads fail with an error wrapping
	// os.ErrDeadlineExceeded once t passes; the zero time clears it.
	SetReadDeadline(t time.Time) error
}

// Device is an AoE target as the generator addresses it.
type Device struct {
	// MAC is the address the target answers from.
	MAC   aoe.MAC
	Shelf uint16
	Slot  uint8
	// BufferCount is the target's advertised window.
	BufferCount int
	// SectorsPerFrame is the most sectors one request carries: the
	// target's figure, lowered to what the initiator's MTU allows.
	SectorsPerFrame int
	// Sectors is the capacity in 512-byte sectors, from IDENTIFY.
	Sectors uint64
	// Model, Serial and Firmware are the IDENTIFY strings.
	Model, Serial, Firmware string
}

// String names the device as the Linux driver does, with its address.
func (d Device) String() string { return fmt.Sprintf("e%d.%d@%v", d.Shelf, d.Slot, d.MAC) }

// Op is the kind of request a workload sends.
type Op int

// Workload operations.
const (
	Read Op = iota
	Write
)

// String returns "read" or "write".
func (o Op) String() string {
	if o == Write {
		return "write"
	}
	return "read"
}

// ParseOp reads "read" or "write".
func ParseOp(s string) (Op, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read", "r":
		return Read, nil
	case "write", "w":
		return Write, nil
	}
	return 0, fmt.Errorf("bench: operation %q: want read or write", s)
}
